"""Spec §9.1–§9.3: the signal gates. Every gate is evaluated and every failing reason collected."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from engine.config.strategy import StrategyConfig
from engine.gates.result import GateResult
from engine.scoring.signals import Direction
from engine.scoring.timeframe import tables


@dataclass(frozen=True, slots=True)
class MicroInputs:
    """Live microstructure for the avoid-entry filter (§11); never present in backtests."""

    spread_pct: float | None = None
    funding_rate_pct: float | None = None
    buy_sell_ratio: float | None = None


class GateInputs(NamedTuple):
    """Everything the §9.3 gates read, already computed."""

    final_score: float
    prev_score: float
    atr_pct: float | None
    confidence: float
    agreeing: int
    total_indicators: int
    trend: Direction
    drawdown_pct: float
    mtf_passed: bool | None
    mtf_detail: str
    has_trigger: bool
    divergence_count: int
    rsi_alone: bool | None = None
    micro: MicroInputs | None = None


def threshold(cfg: StrategyConfig, atr_pct: float | None) -> float:
    """§9.2: T = base threshold + volatility boost (+5 at ATR% ≥ 4, +10 at ≥ 6)."""
    base = tables(cfg).gates.min_score
    if not cfg.gates.volatility_threshold_boost or atr_pct is None:
        return base
    v = cfg.volatility
    if atr_pct >= float(v.threshold_boost_high_atr_pct):
        return base + float(v.threshold_boost_high)
    if atr_pct >= float(v.threshold_boost_medium_atr_pct):
        return base + float(v.threshold_boost_medium)
    return base


def not_ready(detail: str) -> list[GateResult]:
    """Gate 0: nothing else is evaluated."""
    return [GateResult("data_not_ready", False, detail=detail)]


def evaluate_gates(cfg: StrategyConfig, g: GateInputs) -> list[GateResult]:
    """Gates 1–12 (and divergence_required when enabled) for the direction sign(finalScore)."""
    eff = tables(cfg).gates
    x, prev = g.final_score, g.prev_score
    ax = abs(x)
    t = threshold(cfg, g.atr_pct)
    d = Direction.BULLISH if x > 0 else Direction.BEARISH if x < 0 else Direction.NEUTRAL
    pct = g.agreeing / g.total_indicators if g.total_indicators else 0.0
    out = [
        GateResult("dead_zone", ax >= eff.dead_zone_min, ax, eff.dead_zone_min),
        GateResult("min_score", ax >= t, ax, t),
    ]
    if eff.threshold_cross_required:
        crossed = (prev < t <= x) if d is Direction.BULLISH else (x <= -t < prev) if d is Direction.BEARISH else False
        out.append(GateResult("threshold_cross", crossed, prev, t, f"previous score {prev:.2f}, now {x:.2f}"))
    out.append(GateResult("min_confidence", g.confidence >= eff.min_confidence, g.confidence, eff.min_confidence))
    out.append(
        GateResult("min_indicators", g.agreeing >= eff.min_indicators_agreeing, g.agreeing, eff.min_indicators_agreeing)
    )
    out.append(GateResult("confluence_percent", pct >= eff.confluence_percent_min, pct, eff.confluence_percent_min))
    if cfg.gates.require_trend_alignment:
        aligned = d is not Direction.NEUTRAL and g.trend is d
        if not cfg.gates.neutral_trend_blocks and g.trend is Direction.NEUTRAL:
            aligned = True
        out.append(GateResult("trend_alignment", aligned, g.trend.label, d.label))
    out.append(
        GateResult(
            "max_drawdown", g.drawdown_pct <= cfg.gates.max_drawdown_pct, g.drawdown_pct, cfg.gates.max_drawdown_pct
        )
    )
    if cfg.gates.require_mtf_alignment and g.mtf_passed is not None:
        out.append(GateResult("mtf_alignment", g.mtf_passed, detail=g.mtf_detail))
    if cfg.gates.require_trigger_signal:
        out.append(
            GateResult("trigger_signal", g.has_trigger, detail="divergence, golden/death cross, squeeze or crossover")
        )
    if cfg.gates.require_divergence:
        out.append(GateResult("divergence_required", g.divergence_count > 0, g.divergence_count, 1))
    if cfg.gates.rsi_alone_guard and g.rsi_alone is not None:
        out.append(GateResult("rsi_alone", not g.rsi_alone, detail="gates would fail without standalone RSI"))
    if cfg.gates.live_avoid_entry_filter and g.micro is not None:
        out.append(avoid_entry(cfg, g.micro))
    return out


def avoid_entry(cfg: StrategyConfig, m: MicroInputs) -> GateResult:
    """§11 live block-only filter: wide spread, extreme funding, one-sided tape."""
    a = cfg.microstructure.avoid_entry
    reasons = []
    if m.spread_pct is not None and m.spread_pct > a.max_spread_pct:
        reasons.append(f"spread {m.spread_pct:.4f}% > {a.max_spread_pct}%")
    if m.funding_rate_pct is not None and abs(m.funding_rate_pct) > a.max_abs_funding_rate_pct:
        reasons.append(f"|funding| {abs(m.funding_rate_pct):.4f}% > {a.max_abs_funding_rate_pct}%")
    if m.buy_sell_ratio is not None and not a.buy_sell_ratio_low <= m.buy_sell_ratio <= a.buy_sell_ratio_high:
        reasons.append(
            f"buy/sell ratio {m.buy_sell_ratio:.2f} outside [{a.buy_sell_ratio_low}, {a.buy_sell_ratio_high}]"
        )
    return GateResult("avoid_entry", not reasons, detail="; ".join(reasons))
