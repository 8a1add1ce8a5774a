"""Spec §7.2, §7.3 and §8: combine the primary and confirmation timeframes, then apply confidence penalties."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, NamedTuple

from engine.config.strategy import StrategyConfig
from engine.scoring.signals import Direction
from engine.scoring.timeframe import TimeframeResult, clamp, round_half_up


class Alignment(StrEnum):
    FULL = "full"
    PARTIAL = "partial"
    DIVERGENT = "divergent"


class Combined(NamedTuple):
    """The final score and confidence (before penalties) with the MTF numbers behind them."""

    final_score: float
    confidence_points: int
    alignment: Alignment | None
    weighted: float
    gap: float | None
    align_bonus: float
    mtf_gate_passed: bool | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "final_score": self.final_score,
            "confidence_points": self.confidence_points,
            "alignment": None if self.alignment is None else self.alignment.value,
            "weighted": self.weighted,
            "gap": self.gap,
            "align_bonus": self.align_bonus,
            "mtf_gate_passed": self.mtf_gate_passed,
        }


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


class Penalties(NamedTuple):
    choppy: bool
    vol_penalty: float
    conflicts: int
    total: float


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
