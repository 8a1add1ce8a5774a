"""One gate's verdict, shared by the signal gates (§9.3) and the pre-trade risk checks (§9.4)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple


class GateResult(NamedTuple):
    """``code`` passed or failed; ``value`` against ``threshold`` says why, ``detail`` in words.

    A NamedTuple, not a frozen dataclass: a dozen are built for every symbol on every bar, and a frozen
    dataclass costs ~4x as much to build (~1.2 µs against ~0.3 µs)."""

    code: str
    passed: bool
    value: float | str | None = None
    threshold: float | str | None = None
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "passed": self.passed,
            "value": self.value,
            "threshold": self.threshold,
            "detail": self.detail,
        }


def failing_reasons(results: Iterable[GateResult]) -> list[str]:
    """Codes of the failed gates, in evaluation order."""
    return [r.code for r in results if not r.passed]
