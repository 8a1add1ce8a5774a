"""Spec §9.1–§9.3: the signal gates. Every gate is evaluated and every failing reason collected."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple, overload

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
    has_trigger: bool
    divergence_count: int
    rsi_alone: bool | None = None
    micro: MicroInputs | None = None
    mtf_alignment: str | None = None  # for the mtf_alignment gate's explanation, formatted only when read
    mtf_gap: float | None = None


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
    return list(iter_gates(cfg, g))


def gates_pass(cfg: StrategyConfig, g: GateInputs) -> bool:
    """Whether every gate passes, stopping at the first that fails (most bars fail the first or second)."""
    return all(result.passed for result in iter_gates(cfg, g))


def iter_gates(cfg: StrategyConfig, g: GateInputs) -> Iterator[GateResult]:
    """The gates one at a time, in evaluation order: ``gates_pass`` reads only up to the first failure."""
    eff = tables(cfg).gates
    x, prev = g.final_score, g.prev_score
    ax = abs(x)
    t = threshold(cfg, g.atr_pct)
    d = Direction.BULLISH if x > 0 else Direction.BEARISH if x < 0 else Direction.NEUTRAL
    pct = g.agreeing / g.total_indicators if g.total_indicators else 0.0
    yield GateResult("dead_zone", ax >= eff.dead_zone_min, ax, eff.dead_zone_min)
    yield GateResult("min_score", ax >= t, ax, t)
    if eff.threshold_cross_required:
        crossed = (prev < t <= x) if d is Direction.BULLISH else (x <= -t < prev) if d is Direction.BEARISH else False
        yield GateResult("threshold_cross", crossed, prev, t, f"previous score {prev:.2f}, now {x:.2f}")
    yield GateResult("min_confidence", g.confidence >= eff.min_confidence, g.confidence, eff.min_confidence)
    yield GateResult(
        "min_indicators", g.agreeing >= eff.min_indicators_agreeing, g.agreeing, eff.min_indicators_agreeing
    )
    yield GateResult("confluence_percent", pct >= eff.confluence_percent_min, pct, eff.confluence_percent_min)
    if cfg.gates.require_trend_alignment:
        aligned = d is not Direction.NEUTRAL and g.trend is d
        if not cfg.gates.neutral_trend_blocks and g.trend is Direction.NEUTRAL:
            aligned = True
        yield GateResult("trend_alignment", aligned, g.trend.label, d.label)
    yield GateResult(
        "max_drawdown", g.drawdown_pct <= cfg.gates.max_drawdown_pct, g.drawdown_pct, cfg.gates.max_drawdown_pct
    )
    if cfg.gates.require_mtf_alignment and g.mtf_passed is not None:
        yield GateResult("mtf_alignment", g.mtf_passed, detail=f"alignment {g.mtf_alignment}, gap {g.mtf_gap}")
    if cfg.gates.require_trigger_signal:
        yield GateResult("trigger_signal", g.has_trigger, detail="divergence, golden/death cross, squeeze or crossover")
    if cfg.gates.require_divergence:
        yield GateResult("divergence_required", g.divergence_count > 0, g.divergence_count, 1)
    if cfg.gates.rsi_alone_guard and g.rsi_alone is not None:
        yield GateResult("rsi_alone", not g.rsi_alone, detail="gates would fail without standalone RSI")
    if cfg.gates.live_avoid_entry_filter and g.micro is not None:
        yield avoid_entry(cfg, g.micro)


class LazyGates(Sequence[GateResult]):
    """The gates of one decision, evaluated when first read; ``passed`` alone stops at the first failure.

    Most bars score far below the entry threshold, and the backtest reads only whether a decision passed: building
    all twelve results and their explanations for every bar of every symbol was ~7 µs a bar spent on nothing.
    Read in full (``failing``, ``to_dict``, iteration) the list is built once, by the same ``iter_gates``.
    """

    __slots__ = ("_cfg", "_inputs", "_list")

    def __init__(self, cfg: StrategyConfig, inputs: GateInputs) -> None:
        self._cfg = cfg
        self._inputs = inputs
        self._list: list[GateResult] | None = None

    @property
    def passed(self) -> bool:
        if self._list is not None:
            return all(r.passed for r in self._list)
        return gates_pass(self._cfg, self._inputs)

    def _all(self) -> list[GateResult]:
        if self._list is None:
            self._list = evaluate_gates(self._cfg, self._inputs)
        return self._list

    @overload
    def __getitem__(self, index: int) -> GateResult: ...

    @overload
    def __getitem__(self, index: slice) -> list[GateResult]: ...

    def __getitem__(self, index: int | slice) -> GateResult | list[GateResult]:
        return self._all()[index]

    def __len__(self) -> int:
        return len(self._all())

    def __iter__(self) -> Iterator[GateResult]:
        return iter(self._all())

    def __eq__(self, other: object) -> bool:
        return self._all() == (list(other) if isinstance(other, LazyGates) else other)

    __hash__ = None  # type: ignore[assignment]  # like the list it stands for

    def __repr__(self) -> str:
        return repr(self._all())


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
