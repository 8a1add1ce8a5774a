"""Crash points for the chaos tests: ``ENYGMA_CRASH_AT=<name>`` makes the process SIGKILL itself there.

Unset (always, outside the chaos tests) it does nothing; it exists so the tests can prove that a crash at the
worst moments loses no stop and doubles no order.
"""

from __future__ import annotations

import os
import signal

# Read once: the tests set it in the environment of the process they start, and a crash point now sits in
# the bus's recorder (every event): ``os.environ`` at each call cost ~1 us there, the global ~50 ns.
CRASH_AT = os.environ.get("ENYGMA_CRASH_AT")


def crash_point(name: str) -> None:
    if CRASH_AT is not None and name == CRASH_AT:
        os.kill(os.getpid(), signal.SIGKILL)
