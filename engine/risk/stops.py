"""§10.5–§10.8: the per-position stop and take-profit rule. Pure: the backtest calls it at bar closes, the
runtime at debounced mark ticks, so both move stops identically."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal
from enum import StrEnum

from engine.config.strategy import StrategyConfig
from engine.models import Side
from engine.risk.formulas import (
    break_even_price,
    gross_roi,
    price_at_roi,
    round_stop,
    round_take_profit,
)


class StopReason(StrEnum):
    INITIAL = "initial"
    BREAK_EVEN = "break_even"
    PROFIT_LOCK = "profit_lock"
    TRAILING = "trailing_stop"


# The exit reason a stop hit reports, by the reason that last set the stop.
EXIT_REASON_BY_STOP = {
    StopReason.INITIAL: "stop_loss",
    StopReason.BREAK_EVEN: "break_even",
    StopReason.PROFIT_LOCK: "profit_lock",
    StopReason.TRAILING: "trailing_stop",
}


@dataclass(frozen=True, slots=True)
class StopUpdate:
    """A stop (and maybe TP) move: ``old`` → ``new`` for ``reason``; ``take_profit`` is None when unchanged."""

    old_stop: Decimal
    new_stop: Decimal
    reason: StopReason
    take_profit: Decimal | None
    roi: Decimal


class StopManager:
    """Holds one position's stop and TP; only ever moves them in the profit direction (never untrails)."""

    __slots__ = (
        "_cfg",
        "entry",
        "last_update_ms",
        "leverage",
        "side",
        "stop",
        "stop_reason",
        "take_profit",
        "tick",
        "tp_roi",
        "trailing_active",
    )

    def __init__(
        self,
        cfg: StrategyConfig,
        *,
        side: Side,
        entry: Decimal,
        leverage: int,
        tick: Decimal,
        stop: Decimal,
        take_profit: Decimal,
        stop_reason: StopReason = StopReason.INITIAL,
    ) -> None:
        self._cfg = cfg
        self.side = side
        self.entry = entry
        self.leverage = leverage
        self.tick = tick
        self.stop = stop
        self.take_profit = take_profit
        self.stop_reason = stop_reason
        self.tp_roi = cfg.risk_management.take_profit_roi
        self.trailing_active = False
        self.last_update_ms: int | None = None

    @property
    def exit_reason(self) -> str:
        """What a hit of the current stop is reported as."""
        return EXIT_REASON_BY_STOP[self.stop_reason]

    def candidates(self, price: Decimal) -> list[tuple[Decimal, StopReason]]:
        """Every stop candidate the price unlocks (§10.8), rounded to tick, before the never-untrail max/min."""
        rm = self._cfg.risk_management
        side, entry, lev, tick = self.side, self.entry, self.leverage, self.tick
        roi = gross_roi(side, entry, price, lev)
        found: list[tuple[Decimal, StopReason]] = []
        if rm.break_even_enabled and roi >= rm.break_even_activation_roi:
            found.append((round_stop(break_even_price(self._cfg, side, entry, lev), side, tick), StopReason.BREAK_EVEN))
        if rm.profit_lock_enabled:
            for level in rm.profit_lock_levels:
                if roi >= level.trigger_roi:
                    lock = round_stop(price_at_roi(side, entry, level.lock_roi, lev), side, tick)
                    found.append((lock, StopReason.PROFIT_LOCK))
        if rm.trailing_enabled and roi >= rm.trailing_activation_roi:
            step = rm.trailing_step_roi
            level_roi = (roi / step).to_integral_value(rounding=ROUND_FLOOR) * step
            trail = round_stop(price_at_roi(side, entry, level_roi - rm.trailing_distance_roi, lev), side, tick)
            found.append((trail, StopReason.TRAILING))
        # Runtime guard: a candidate must lie strictly on the protective side of the price that produced it.
        return [(p, r) for p, r in found if side.further(price, p)]

    def update(self, price: Decimal, *, now_ms: int | None = None) -> StopUpdate | None:
        """Apply the update rule at ``price``; returns the move, or None when the stop stays.

        With ``now_ms`` (live) a move smaller than ``stopMinMoveTicks`` within ``stopUpdateMinIntervalMs`` of the
        last one is skipped; backtests pass no clock and take every move.
        """
        rm = self._cfg.risk_management
        roi = gross_roi(self.side, self.entry, price, self.leverage)
        if rm.trailing_enabled and roi >= rm.trailing_activation_roi:
            self.trailing_active = True
        best, reason = self.stop, self.stop_reason
        for cand, cand_reason in self.candidates(price):
            if self.side.further(cand, best):
                best, reason = cand, cand_reason
        if best == self.stop:
            return None
        if now_ms is not None and self.last_update_ms is not None:
            recent = now_ms - self.last_update_ms < rm.stop_update_min_interval_ms
            small = abs(best - self.stop) < self.tick * rm.stop_min_move_ticks
            if recent and small:
                return None
        old = self.stop
        self.stop, self.stop_reason = best, reason
        self.last_update_ms = now_ms
        new_tp = self._extend_take_profit()
        return StopUpdate(old_stop=old, new_stop=best, reason=reason, take_profit=new_tp, roi=roi)

    def _extend_take_profit(self) -> Decimal | None:
        """§10.8 TP extension: once trailing, tpRoi = max(tpRoi, stopRoi + SL + TP ROI); never moves back."""
        rm = self._cfg.risk_management
        if not (rm.extend_take_profit_when_trailing and self.trailing_active):
            return None
        stop_roi = gross_roi(self.side, self.entry, self.stop, self.leverage)
        wanted = stop_roi + rm.take_profit_roi + rm.stop_loss_roi
        if wanted <= self.tp_roi:
            return None
        self.tp_roi = wanted
        tp = round_take_profit(price_at_roi(self.side, self.entry, wanted, self.leverage), self.side, self.tick)
        if not self.side.further(tp, self.take_profit):
            return None
        self.take_profit = tp
        return tp
