"""Spec §5–§7.1 for one timeframe: points, caps, combination bonuses, agreement, base confidence.

The arithmetic runs in the compiled kernel (engine/scoring/score_kernel.py); this module encodes the Python
values into its rows and decodes its result rows back (tests/scoring/reference_scoring.py: the readable reference).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from engine.config.strategy import StrategyConfig
from engine.indicators.kernel import row_from_snapshot
from engine.indicators.snapshot import IndicatorSnapshot
from engine.pysum import py_sum
from engine.scoring.codes import CATEGORIES, INDICATORS, KINDS, MAX_SIGNALS, N_INDICATORS, SIG_COLUMNS, STRENGTHS
from engine.scoring.detect_kernel import signals_from_rows
from engine.scoring.params import score_params
from engine.scoring.score_kernel import (
    CB_EMA_BEAR,
    CB_EMA_BULL,
    CLASSES,
    COMBOS,
    N_COMBOS,
    TF_BEAR_IND,
    TF_BEAR_SIGNALS,
    TF_BULL_IND,
    TF_BULL_SIGNALS,
    TF_COMBO_PRESENT,
    TF_COMBO_VALUE,
    TF_CONFIDENCE,
    TF_CONTRIB,
    TF_DIVERGENCES,
    TF_INDICATOR_SCORE,
    TF_MICRO,
    TF_N_CONTRIB,
    TF_ORDER,
    TF_POINTS,
    TF_TOTAL,
    TF_TOTAL_INDICATORS,
    base_confidence_k,
    classify_k,
    new_tf_row,
    score_tf,
)
from engine.scoring.signals import Direction, Signal


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
    return CLASSES[classify_k(score_params(cfg)[1], x)]


# --------------------------------------------------------------------------- rows in and out of the kernels

_INDICATOR = {n: i for i, n in enumerate(INDICATORS)}
_KIND = {n: i for i, n in enumerate(KINDS)}
_STRENGTH = {n: i for i, n in enumerate(STRENGTHS)}
_CATEGORY = {n: i for i, n in enumerate(CATEGORIES)}


def rows_from_signals(
    signals: Sequence[Signal], out: npt.NDArray[np.int64] | None = None
) -> tuple[npt.NDArray[np.int64], int]:
    """``signals`` as int64 signal rows (engine/scoring/codes.py) and how many there are."""
    rows = np.zeros((MAX_SIGNALS, SIG_COLUMNS), dtype=np.int64) if out is None else out
    for i, s in enumerate(signals):
        rows[i] = (
            _INDICATOR[s.indicator],
            _KIND[s.kind],
            int(s.direction),
            _STRENGTH[s.strength],
            _CATEGORY[s.category],
        )
    return rows, len(signals)


def ready_mask(ready: Sequence[str], out: npt.NDArray[np.int64] | None = None) -> npt.NDArray[np.int64]:
    """The 0/1 readiness mask (``INDICATORS`` order) of the detector names in ``ready`` (other names are ignored)."""
    mask = np.zeros(N_INDICATORS, dtype=np.int64) if out is None else out
    mask[:] = 0
    for name in ready:
        i = _INDICATOR.get(name)
        if i is not None:
            mask[i] = 1
    return mask


def row_from_timeframe_result(
    tr: TimeframeResult, out: npt.NDArray[np.float64] | None = None
) -> npt.NDArray[np.float64]:
    """A ``TimeframeResult`` (e.g. one built by hand) as a timeframe result row; the per-signal points are NaN."""
    row = new_tf_row() if out is None else out
    row[:] = np.nan
    row[TF_TOTAL] = tr.tf_total
    row[TF_INDICATOR_SCORE] = tr.indicator_score
    row[TF_BULL_IND] = tr.bull_ind
    row[TF_BEAR_IND] = tr.bear_ind
    row[TF_TOTAL_INDICATORS] = tr.total_indicators
    row[TF_DIVERGENCES] = tr.divergence_count
    row[TF_CONFIDENCE] = tr.confidence_points
    row[TF_BULL_SIGNALS] = tr.bull_signals
    row[TF_BEAR_SIGNALS] = tr.bear_signals
    row[TF_MICRO] = tr.micro_score
    row[TF_ORDER : TF_ORDER + N_INDICATORS] = -1.0
    k = 0
    for name, value in tr.contributions.items():
        i = _INDICATOR.get(name)
        if i is not None:
            row[TF_CONTRIB + i] = value
            row[TF_ORDER + k] = i
            k += 1
    row[TF_N_CONTRIB] = k
    row[TF_COMBO_PRESENT : TF_COMBO_PRESENT + N_COMBOS] = 0.0
    row[TF_COMBO_VALUE : TF_COMBO_VALUE + N_COMBOS] = 0.0
    for combo in tr.combos:
        slot = COMBOS.index(combo.name)
        if slot == CB_EMA_BULL and combo.value < 0:
            slot = CB_EMA_BEAR
        row[TF_COMBO_PRESENT + slot] = 1.0
        row[TF_COMBO_VALUE + slot] = combo.value
    return row


def timeframe_result_from_row(
    row: npt.NDArray[np.float64],
    sig: npt.NDArray[np.int64],
    nsig: int,
    ready: tuple[str, ...],
    signals: Sequence[Signal] | None = None,
) -> TimeframeResult:
    """The ``TimeframeResult`` of a row written by ``score_tf`` from ``sig[:nsig]``.

    ``ready``: the detector names (its ``ready_indicators``); ``signals``: the ``Signal`` objects the rows were
    made from, when the caller has them (else they are built from the rows)."""
    values = row.tolist()
    sigs = signals_from_rows(sig, nsig) if signals is None else signals
    n_contrib = int(values[TF_N_CONTRIB])
    contributions = {
        INDICATORS[i]: values[TF_CONTRIB + i] for i in (int(values[TF_ORDER + k]) for k in range(n_contrib))
    }
    points = values[TF_POINTS : TF_POINTS + nsig]
    scored = [ScoredSignal(s, pts) for s, pts in zip(sigs, points, strict=False) if not math.isnan(pts)]
    combos = [
        ComboBonus(COMBOS[j], values[TF_COMBO_VALUE + j]) for j in range(N_COMBOS) if values[TF_COMBO_PRESENT + j]
    ]
    # Python's sum() of nothing is the int 0, which clamp() keeps: the reference's indicator score then is an int.
    indicator_score: float = values[TF_INDICATOR_SCORE] if n_contrib else 0
    return TimeframeResult(
        values[TF_TOTAL],
        indicator_score,
        contributions,
        scored,
        combos,
        int(values[TF_BULL_IND]),
        int(values[TF_BEAR_IND]),
        int(values[TF_TOTAL_INDICATORS]),
        int(values[TF_DIVERGENCES]),
        int(values[TF_CONFIDENCE]),
        int(values[TF_BULL_SIGNALS]),
        int(values[TF_BEAR_SIGNALS]),
        values[TF_MICRO],
        ready,
    )


def _check_ready(cfg: StrategyConfig, ready: Sequence[str]) -> None:
    for name in ready:
        if name not in _INDICATOR and cfg.indicators.get(name).directional:
            raise ValueError(f"{name!r} has no signal detector and cannot be a directional indicator")


def combo_bonuses(cfg: StrategyConfig, snap: IndicatorSnapshot | None, signals: list[Signal]) -> list[ComboBonus]:
    """§5.4 signed combination bonuses (trending = ADX ≥ 25; RSI = RSI(14) inside StochRSI) of counted signals."""
    ip, fp = score_params(cfg)
    sig, nsig = rows_from_signals(signals)
    out = new_tf_row()
    score_tf(ip, fp, sig, nsig, np.ones(N_INDICATORS, dtype=np.int64), row_from_snapshot(snap), 0.0, out)
    return timeframe_result_from_row(out, sig, nsig, (), signals).combos


def score_timeframe(
    cfg: StrategyConfig,
    signals: list[Signal],
    ready: tuple[str, ...],
    snap: IndicatorSnapshot | None,
    *,
    micro_score: float = 0.0,
) -> TimeframeResult:
    """§5.1–§5.5, §6 and §7.1 from the signals of the enabled, ready indicators named in ``ready`` (the kernel
    ``score_tf``; contributions in ``INDICATORS`` order)."""
    _check_ready(cfg, ready)
    ip, fp = score_params(cfg)
    sig, nsig = rows_from_signals(signals)
    out = new_tf_row()
    score_tf(ip, fp, sig, nsig, ready_mask(ready), row_from_snapshot(snap), micro_score, out)
    return timeframe_result_from_row(out, sig, nsig, ready, signals)


def base_confidence(
    cfg: StrategyConfig, bull: list[float], bear: list[float], max_agreeing: int, divergences: int
) -> int:
    """§7.1: 60·agreement + min(20, 5·maxAgreeing) + 10·divergences, clamped and rounded half up.

    ``bull`` / ``bear``: the strength multipliers of the bullish / bearish signals, in signal order (summed as
    Python's compensated ``sum()`` does: a running total would differ in the last bits)."""
    b, s = np.array(bull, dtype=np.float64), np.array(bear, dtype=np.float64)
    fp = score_params(cfg)[1]
    return int(base_confidence_k(fp, py_sum(b, len(b)), py_sum(s, len(s)), max_agreeing, divergences))
