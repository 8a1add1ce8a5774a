"""Spec §5–§7.1 for one timeframe: points, caps, combination bonuses, agreement, base confidence."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

from engine.config.strategy import GateThresholds, StrategyConfig
from engine.indicators.snapshot import IndicatorSnapshot
from engine.scoring.signals import Direction, Signal


def clamp(x: float, lo: float, hi: float) -> float:
    return min(hi, max(lo, x))


def round_half_up(x: float) -> int:
    """The spec's rounding (never banker's rounding)."""
    return math.floor(x + 0.5)


class ScoredSignal(NamedTuple):  # built for every signal on every bar: a tuple is ~4x cheaper than a dataclass
    signal: Signal
    points: float

    def to_dict(self) -> dict[str, Any]:
        return {**self.signal.to_dict(), "points": self.points}


class ComboBonus(NamedTuple):
    name: str
    value: float


class TimeframeResult(NamedTuple):
    """One timeframe's score and the numbers behind it (a NamedTuple: built for every symbol on every bar)."""

    tf_total: float
    indicator_score: float
    contributions: dict[str, float]
    signals: list[ScoredSignal]
    combos: list[ComboBonus]
    bull_ind: int
    bear_ind: int
    total_indicators: int
    divergence_count: int
    confidence_points: int
    bull_signals: int
    bear_signals: int
    micro_score: float = 0.0
    ready_indicators: tuple[str, ...] = ()

    @property
    def direction(self) -> Direction:
        return tf_direction(self.tf_total)

    @property
    def max_agreeing(self) -> int:
        return max(self.bull_ind, self.bear_ind)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tf_total": self.tf_total,
            "indicator_score": self.indicator_score,
            "direction": self.direction.label,
            "contributions": self.contributions,
            "signals": [s.to_dict() for s in self.signals],
            "combos": [{"name": c.name, "value": c.value} for c in self.combos],
            "bull_indicators": self.bull_ind,
            "bear_indicators": self.bear_ind,
            "total_indicators": self.total_indicators,
            "divergence_count": self.divergence_count,
            "confidence_points": self.confidence_points,
        }


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
