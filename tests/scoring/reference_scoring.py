"""The readable Python scoring, MTF, confidence and gates as they were before the compiled kernels
(engine/scoring/score_kernel.py, engine/gates/gate_kernel.py): the reference the kernels are held to, bar for bar.

Same arithmetic, in the same order, on the engine's own result types (TimeframeResult, Combined, Penalties,
GateResult), so a kernel result and a reference result compare with ``==`` and ``repr``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from engine.config.strategy import GateThresholds, StrategyConfig
from engine.gates.entry import GateInputs, MicroInputs, avoid_entry
from engine.gates.result import GateResult
from engine.indicators.snapshot import IndicatorSnapshot
from engine.scoring.mtf import Alignment, Combined, Penalties
from engine.scoring.signals import Direction, Signal
from engine.scoring.timeframe import ComboBonus, ScoredSignal, TimeframeResult
from tests.scoring.reference_detectors import trend_direction


@dataclass(frozen=True, slots=True)
class ScoringTables:
    """Config numbers the per-bar scoring reads, looked up once instead of on every signal."""

    weight: dict[str, float]
    directional: dict[str, bool]
    strength: dict[str, float]
    category: dict[str, float]
    base_fraction: float
    gates: GateThresholds
    triggers: frozenset[str]


_TABLES: dict[int, tuple[StrategyConfig, ScoringTables]] = {}


def tables(cfg: StrategyConfig) -> ScoringTables:
    """The lookup tables of ``cfg`` (cached per config object)."""
    hit = _TABLES.get(id(cfg))
    if hit is not None and hit[0] is cfg:
        return hit[1]
    names = cfg.indicators.names()
    strengths = ("veryStrong", "strong", "moderate", "weak", "extreme", "unknown")
    categories = ("divergence", "goldenDeathCross", "squeeze", "crossover", "momentum", "zone", "other")
    built = ScoringTables(
        weight={n: cfg.indicators.get(n).weight for n in names},
        directional={n: cfg.indicators.get(n).directional for n in names},
        strength={n: cfg.strength_multipliers.get(n) for n in strengths},
        category={n: cfg.signal_type_multipliers.get(n) for n in categories},
        base_fraction=cfg.scoring.signal_base_points_fraction,
        gates=cfg.effective_gates(),
        triggers=cfg.gates.trigger_category_set,
    )
    _TABLES[id(cfg)] = (cfg, built)
    return built


TRIGGER_EXCLUDED = frozenset({"rsi"})


def clamp(x: float, lo: float, hi: float) -> float:
    return min(hi, max(lo, x))


def round_half_up(x: float) -> int:
    """The spec's rounding (never banker's rounding)."""
    return math.floor(x + 0.5)


def tf_direction(total: float, band: float = 40.0) -> Direction:
    """§5.5: bullish at ≥ 40, bearish at ≤ −40."""
    if total >= band:
        return Direction.BULLISH
    if total <= -band:
        return Direction.BEARISH
    return Direction.NEUTRAL


def classify(cfg: StrategyConfig, x: float) -> str:
    """§5.5 classification bands."""
    c = cfg.scoring.classification
    if x >= c.extreme_buy_min:
        return "EXTREME_BUY"
    if x >= c.strong_buy_min:
        return "STRONG_BUY"
    if x >= c.buy_min:
        return "BUY"
    if x >= c.buy_weak_min:
        return "BUY_WEAK"
    if x <= c.extreme_sell_max:
        return "EXTREME_SELL"
    if x <= c.strong_sell_max:
        return "STRONG_SELL"
    if x <= c.sell_max:
        return "SELL"
    if x <= c.sell_weak_max:
        return "SELL_WEAK"
    return "NEUTRAL"


def combo_bonuses(cfg: StrategyConfig, snap: IndicatorSnapshot | None, signals: list[Signal]) -> list[ComboBonus]:
    """§5.4 signed combination bonuses (trending = ADX ≥ 25; RSI = RSI(14) inside StochRSI)."""
    cb = cfg.combination_bonuses
    if not cb.enabled or snap is None or snap.adx is None or snap.plus_di is None or snap.minus_di is None:
        return []
    regime = cfg.regime
    adx, pdi, mdi, rsi = snap.adx, snap.plus_di, snap.minus_di, snap.stoch_rsi_rsi
    out: list[ComboBonus] = []
    trending = adx >= regime.adx_trend_threshold
    if trending and rsi is not None:
        crosses = [s for s in signals if s.kind in ("emaCross", "goldenDeathCross")]
        if any(s.direction is Direction.BULLISH for s in crosses) and rsi > cb.ema_cross_rsi_buy_above:
            out.append(ComboBonus("emaCrossWithRsi", cb.ema_cross_with_rsi))
        if any(s.direction is Direction.BEARISH for s in crosses) and rsi < cb.ema_cross_rsi_sell_below:
            out.append(ComboBonus("emaCrossWithRsi", -cb.ema_cross_with_rsi))
    if trending:
        divs = [s for s in signals if s.kind == "divergence"]
        if any(s.direction is Direction.BULLISH for s in divs) and pdi > mdi:
            out.append(ComboBonus("divergenceWithTrend", cb.divergence_with_trend))
        if any(s.direction is Direction.BEARISH for s in divs) and mdi > pdi:
            out.append(ComboBonus("divergenceWithTrend", -cb.divergence_with_trend))
    if trending and rsi is not None and snap.ema9 is not None and snap.ema50 is not None:
        if snap.ema9 > snap.ema50 and rsi < cb.pullback_buy_rsi_below:
            out.append(ComboBonus("pullbackEntry", cb.pullback_entry))
        elif snap.ema9 < snap.ema50 and rsi > cb.pullback_sell_rsi_above:
            out.append(ComboBonus("pullbackEntry", -cb.pullback_entry))
    if adx >= regime.adx_strong_trend_threshold:
        if pdi > mdi:
            out.append(ComboBonus("strongAdxTrend", cb.strong_adx_trend))
        elif mdi > pdi:
            out.append(ComboBonus("strongAdxTrend", -cb.strong_adx_trend))
    return out


def score_timeframe(
    cfg: StrategyConfig,
    signals: list[Signal],
    ready: tuple[str, ...],
    snap: IndicatorSnapshot | None,
    *,
    micro_score: float = 0.0,
) -> TimeframeResult:
    """§5.1–§5.5, §6 and §7.1 from the signals of the enabled, ready indicators named in ``ready``."""
    t = tables(cfg)
    weight, strength, category, fraction, is_directional = (
        t.weight,
        t.strength,
        t.category,
        t.base_fraction,
        t.directional,
    )
    directional = [n for n in ready if is_directional[n]]
    sums: dict[str, float] = dict.fromkeys(directional, 0.0)
    scored: list[ScoredSignal] = []
    bull: list[float] = []  # the strength multipliers of the bullish and the bearish signals (§7.1 agreement)
    bear: list[float] = []
    divergences = 0
    for s in signals:  # one pass: §5.1 points (W × 0.4 × strength × category, signed), sums, sides, divergences
        ind = s.indicator
        if ind not in ready:
            continue
        mult = strength[s.strength]
        pts = weight[ind] * fraction * mult * category[s.category]
        if s.direction is Direction.BULLISH:
            bull.append(mult)
        else:
            pts = -pts
            if s.direction is Direction.BEARISH:
                bear.append(mult)
        scored.append(ScoredSignal(s, pts))
        sums[ind] = sums.get(ind, 0.0) + pts
        if s.kind == "divergence":
            divergences += 1
    contributions: dict[str, float] = {}
    for n, v in sums.items():  # §5.2: each indicator capped at ± its weight
        w = weight[n]
        contributions[n] = w if v > w else -w if v < -w else v
    cap = cfg.scoring.indicator_score_cap
    indicator_score = clamp(sum(contributions.values()), -cap, cap)
    combos = combo_bonuses(cfg, snap, [ss.signal for ss in scored])
    total_cap = cfg.scoring.total_score_cap
    tf_total = clamp(indicator_score + micro_score + sum(c.value for c in combos), -total_cap, total_cap)
    bull_ind = bear_ind = counted = 0  # §6: standalone RSI never counts as an agreeing indicator
    for n in directional:
        if n == "rsi":
            continue
        counted += 1
        c = contributions[n]
        if c > 0:
            bull_ind += 1
        elif c < 0:
            bear_ind += 1
    conf = base_confidence(cfg, bull, bear, max(bull_ind, bear_ind), divergences)
    # Positionally, in field order (a NamedTuple built with 14 keywords costs twice as much).
    return TimeframeResult(
        tf_total,
        indicator_score,
        contributions,
        scored,
        combos,
        bull_ind,
        bear_ind,
        counted,
        divergences,
        conf,
        len(bull),
        len(bear),
        micro_score,
        ready,
    )


def base_confidence(
    cfg: StrategyConfig, bull: list[float], bear: list[float], max_agreeing: int, divergences: int
) -> int:
    """§7.1: 60·agreement + min(20, 5·maxAgreeing) + 10·divergences, clamped and rounded half up.

    ``bull`` / ``bear``: the strength multipliers of the bullish / bearish signals, in signal order (``sum`` of
    floats is compensated since Python 3.12: a running total would differ in the last bits)."""
    c = cfg.confidence
    bs, ss = sum(bull), sum(bear)
    if bs + ss == 0:
        return 0
    agreement = abs(bs - ss) / (bs + ss)
    points = (
        c.agreement_weight * agreement
        + min(c.agreement_bonus_max, c.agreement_bonus_per_indicator * max_agreeing)
        + c.divergence_bonus_per_signal * divergences
    )
    return round_half_up(clamp(points, 0.0, 100.0))


def alignment(p: Direction, s: Direction) -> Alignment:
    if p is s and p is not Direction.NEUTRAL:
        return Alignment.FULL
    if p is Direction.NEUTRAL or s is Direction.NEUTRAL:
        return Alignment.PARTIAL
    return Alignment.DIVERGENT


def _sign(x: float) -> int:
    return (x > 0) - (x < 0)


def combine(cfg: StrategyConfig, primary: TimeframeResult, confirmation: TimeframeResult | None) -> Combined:
    """§8 and §7.2; without MTF (or without a confirmation result) the primary stands alone."""
    cap = cfg.scoring.total_score_cap
    if not cfg.timeframes.mtf_enabled or confirmation is None:
        return Combined(primary.tf_total, primary.confidence_points, None, primary.tf_total, None, 0.0, None)
    tf, conf = cfg.timeframes, cfg.confidence.mtf
    p_tot, s_tot = primary.tf_total, confirmation.tf_total
    align = alignment(primary.direction, confirmation.direction)
    if align is Alignment.FULL:
        w = tf.primary_weight * p_tot + tf.confirmation_weight * s_tot
    elif align is Alignment.PARTIAL:
        w = tf.partial_primary_weight * p_tot + tf.partial_confirmation_weight * s_tot
    else:
        w = p_tot
    gap = abs(p_tot - s_tot)
    divs = primary.divergence_count + confirmation.divergence_count
    bonus = tf.divergence_signal_score_bonus * divs
    if align is Alignment.FULL:
        bonus += tf.full_alignment_score_bonus
        if gap < 10:
            bonus += tf.low_divergence_bonus_below10
        elif gap < 15:
            bonus += tf.low_divergence_bonus_below15
    final = clamp(w + _sign(w) * bonus, -cap, cap)
    if align is Alignment.FULL:
        align_conf = conf.full_alignment_bonus
    elif align is Alignment.PARTIAL:
        align_conf = conf.partial_alignment_bonus
    else:
        align_conf = conf.divergent_alignment_penalty
    avg_agreeing = (primary.max_agreeing + confirmation.max_agreeing) / 2
    agree_bonus = (
        conf.avg_agreeing5_bonus if avg_agreeing >= 5 else conf.avg_agreeing4_bonus if avg_agreeing >= 4 else 0
    )
    c_mtf = round_half_up(
        clamp(
            conf.primary_weight * primary.confidence_points
            + conf.secondary_weight * confirmation.confidence_points
            + align_conf
            + conf.divergence_signal_bonus * divs
            + agree_bonus,
            0.0,
            100.0,
        )
    )
    gate_ok = (
        (align is Alignment.FULL or (align is Alignment.PARTIAL and tf.allow_partial_alignment))
        and abs(p_tot) >= tf.min_primary_abs_score
        and (confirmation.direction is Direction.NEUTRAL or gap <= tf.max_timeframe_divergence)
    )
    return Combined(final, c_mtf, align, w, gap, bonus, gate_ok)


def penalties(
    cfg: StrategyConfig, atr_pct: float | None, net_move: float | None, primary: TimeframeResult
) -> Penalties:
    """§7.3: chop (ATR% < 2 and the 20-bar net move < 1 %), volatility steps, 2 per conflicting signal."""
    p = cfg.confidence.penalties
    if not p.enabled:
        return Penalties(False, 0.0, 0, 0.0)
    choppy = (
        atr_pct is not None
        and net_move is not None
        and atr_pct < p.chop_atr_pct_below
        and (net_move < p.chop_net_move_below)
    )
    vol = 0.0
    if atr_pct is not None:
        vol = (
            p.vol_penalty_high
            if atr_pct >= p.vol_high_atr_pct
            else p.vol_penalty_medium
            if atr_pct >= p.vol_medium_atr_pct
            else 0.0
        )
    conflicts = min(primary.bull_signals, primary.bear_signals)
    total = (p.chop_penalty if choppy else 0.0) + vol + p.conflict_penalty_per_signal * conflicts
    return Penalties(choppy, vol, conflicts, total)


def final_confidence(c_mtf: int, pen: Penalties) -> float:
    """C_final / 100, clamped to [0, 1]."""
    return clamp(c_mtf - pen.total, 0.0, 100.0) / 100.0


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


class RefDecision(tuple[float, str, Direction, float, TimeframeResult, Combined, Penalties, list[GateResult]]):
    """(final_score, classification, direction, confidence, primary, combined, penalties, gates)."""

    @property
    def passed(self) -> bool:
        return all(g.passed for g in self[7])


def _decide(
    cfg: StrategyConfig,
    close: float,
    snap: IndicatorSnapshot,
    signals: list[Signal],
    ready: tuple[str, ...],
    net_move: float | None,
    confirmation: TimeframeResult | None,
    drawdown_pct: float,
    micro: MicroInputs | None,
    prev: float,
    *,
    rsi_alone: bool | None = None,
) -> RefDecision:
    """``SymbolPipeline._decide`` as it was (``micro`` only when live)."""
    primary = score_timeframe(cfg, signals, ready, snap)
    combined = combine(cfg, primary, confirmation)
    x = combined.final_score
    pen = penalties(cfg, snap.atr_pct, net_move, primary)
    confidence = final_confidence(combined.confidence_points, pen)
    d = Direction.BULLISH if x > 0 else Direction.BEARISH if x < 0 else Direction.NEUTRAL
    agreeing = primary.bull_ind if d is Direction.BULLISH else primary.bear_ind if d is Direction.BEARISH else 0
    assert snap.ema9 is not None and snap.ema50 is not None and snap.ema200 is not None
    triggers = tables(cfg).triggers
    has_trigger = any(
        s.signal.direction is d and s.signal.category in triggers and s.signal.indicator not in TRIGGER_EXCLUDED
        for s in primary.signals
    )
    gates = evaluate_gates(
        cfg,
        GateInputs(
            final_score=x,
            prev_score=prev,
            atr_pct=snap.atr_pct,
            confidence=confidence,
            agreeing=agreeing,
            total_indicators=primary.total_indicators,
            trend=trend_direction(close, snap.ema9, snap.ema50, snap.ema200),
            drawdown_pct=drawdown_pct,
            mtf_passed=combined.mtf_gate_passed,
            has_trigger=has_trigger,
            divergence_count=primary.divergence_count,
            rsi_alone=rsi_alone,
            micro=micro,
            mtf_alignment=combined.alignment,
            mtf_gap=combined.gap,
        ),
    )
    return RefDecision((x, classify(cfg, x), d, confidence, primary, combined, pen, gates))


def decide(
    cfg: StrategyConfig,
    close: float,
    snap: IndicatorSnapshot,
    signals: list[Signal],
    ready: tuple[str, ...],
    net_move: float | None,
    confirmation: TimeframeResult | None,
    drawdown_pct: float,
    micro: MicroInputs | None,
    prev: float,
) -> RefDecision:
    """The decision part of ``SymbolPipeline.on_primary_candle`` as it was, with the rsi_alone re-decision."""
    decision = _decide(cfg, close, snap, signals, ready, net_move, confirmation, drawdown_pct, micro, prev)
    if "rsi" in ready and decision.passed:
        # §9.3 gate 11: an entry must also pass with standalone RSI removed.
        without = _decide(
            cfg,
            close,
            snap,
            [s for s in signals if s.indicator != "rsi"],
            tuple(n for n in ready if n != "rsi"),
            net_move,
            confirmation,
            drawdown_pct,
            micro,
            prev,
        )
        decision = _decide(
            cfg,
            close,
            snap,
            signals,
            ready,
            net_move,
            confirmation,
            drawdown_pct,
            micro,
            prev,
            rsi_alone=not without.passed,
        )
    return decision
