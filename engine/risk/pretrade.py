"""§9.4 pre-trade risk checks: evaluated after the signal gates, every failure collected."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from engine.config.strategy import StrategyConfig
from engine.gates.result import GateResult
from engine.risk.limits import HUNDRED, RiskState


@dataclass(frozen=True, slots=True)
class EntryProposal:
    """What would be opened: the symbol, its margin and size in lots, at ``now_ms``."""

    symbol: str
    margin: Decimal
    lots: int
    lot_size: int
    now_ms: int


def pretrade_checks(
    cfg: StrategyConfig,
    state: RiskState,
    proposal: EntryProposal,
    open_margins: Mapping[str, Decimal],
) -> list[GateResult]:
    """Every §9.4 check with its value and threshold; the entry goes ahead only if all pass."""
    rm = cfg.risk_management
    state.roll(proposal.now_ms)
    sym = proposal.symbol
    total_margin = sum(open_margins.values(), Decimal(0)) + proposal.margin
    max_total = state.equity * rm.max_total_margin_percent / HUNDRED
    daily_limit = -rm.daily_loss_limit_pct
    since_entry = _since(state.last_entry_ms.get(sym), proposal.now_ms)
    since_loss = _since(state.last_loss_exit_ms.get(sym), proposal.now_ms)
    return [
        GateResult("position_exists", sym not in open_margins, sym in open_margins, False, f"one position per {sym}"),
        GateResult(
            "max_positions", len(open_margins) < rm.max_open_positions, len(open_margins), rm.max_open_positions
        ),
        GateResult("max_total_margin", total_margin <= max_total, float(total_margin), float(max_total)),
        GateResult(
            "daily_loss_limit", state.daily_pnl_pct > daily_limit, float(state.daily_pnl_pct), float(daily_limit)
        ),
        GateResult(
            "consecutive_losses",
            state.consecutive_losses < rm.max_consecutive_losses,
            state.consecutive_losses,
            rm.max_consecutive_losses,
        ),
        GateResult(
            "circuit_breaker",
            not state.circuit_breaker and state.drawdown_pct < rm.circuit_breaker_drawdown_pct,
            float(state.drawdown_pct),
            float(rm.circuit_breaker_drawdown_pct),
            "latched until a manual reset" if state.circuit_breaker else "",
        ),
        GateResult("entry_cooldown", since_entry >= rm.entry_cooldown_ms, since_entry, rm.entry_cooldown_ms),
        GateResult("loss_cooldown", since_loss >= rm.loss_cooldown_ms, since_loss, rm.loss_cooldown_ms),
        GateResult("size_too_small", proposal.lots >= proposal.lot_size, proposal.lots, proposal.lot_size),
    ]


def _since(then: int | None, now: int) -> int:
    """Milliseconds since ``then``; a symbol never traded counts as infinitely long ago."""
    return 2**62 if then is None else now - then
