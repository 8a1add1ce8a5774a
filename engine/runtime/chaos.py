"""Crash points for the chaos tests: ``ENYGMA_CRASH_AT=<name>`` makes the process SIGKILL itself there.

Unset (always, outside the chaos tests) it does nothing; it exists so the tests can prove that a crash at the
worst moments loses no stop and doubles no order.
"""

from __future__ import annotations

import os
import signal


def crash_point(name: str) -> None:
    if os.environ.get("ENYGMA_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
