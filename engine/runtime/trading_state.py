"""Trading state as data: ACTIVE (entries allowed) → REDUCING (exits and stop upkeep only) → HALTED (kill switch)."""

from __future__ import annotations

from enum import StrEnum


class TradingState(StrEnum):
    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"
    HALTED = "HALTED"


class IllegalTransitionError(RuntimeError):
    """A move the table does not allow, naming both states."""


# (current, next) pairs that are legal. HALTED leaves only through an explicit reset to REDUCING by a person.
TRANSITIONS: frozenset[tuple[TradingState, TradingState]] = frozenset(
    {
        (TradingState.ACTIVE, TradingState.REDUCING),
        (TradingState.ACTIVE, TradingState.HALTED),
        (TradingState.REDUCING, TradingState.ACTIVE),
        (TradingState.REDUCING, TradingState.HALTED),
        (TradingState.HALTED, TradingState.REDUCING),
    }
)


def check_transition(old: TradingState, new: TradingState) -> None:
    if old is not new and (old, new) not in TRANSITIONS:
        raise IllegalTransitionError(f"trading state cannot move from {old} to {new}")
