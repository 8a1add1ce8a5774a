"""A business or gateway error the simulator answers with KuCoin's code."""

from __future__ import annotations


class SimError(Exception):
    def __init__(self, code: str, message: str, http_status: int = 200) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.http_status = http_status
