"""Spec §9.2–§9.3 compiled: the entry threshold and the signal gates over plain numbers.

Every gate is evaluated (all failing reasons are collected) and written as one float64 row of ``gates_out``:
``(code, present, passed, value, threshold)`` with ``code`` an index into ``GATES``, ``present`` 1.0 for the rows
written on this call (0.0 after them), ``passed`` 1.0 / 0.0 and NaN for a value or threshold that is None.
``trend_alignment``'s value and threshold are direction codes (−1 / 0 / +1). ``avoid_entry`` is live only and
string-based: it stays in Python (``engine.gates.entry.avoid_entry``) and is never written here.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from engine.jit import kernel
from engine.scoring.params import (
    FP_BOOST_HIGH,
    FP_BOOST_HIGH_ATR,
    FP_BOOST_MEDIUM,
    FP_BOOST_MEDIUM_ATR,
    FP_G_CONFLUENCE,
    FP_G_DEAD_ZONE,
    FP_G_MAX_DRAWDOWN,
    FP_G_MIN_CONFIDENCE,
    FP_G_MIN_SCORE,
    IP_MIN_INDICATORS,
    IP_NEUTRAL_TREND_BLOCKS,
    IP_REQ_DIVERGENCE,
    IP_REQ_MTF,
    IP_REQ_TREND,
    IP_REQ_TRIGGER,
    IP_RSI_ALONE_GUARD,
    IP_THRESHOLD_CROSS,
    IP_VOL_BOOST,
)

GATES = (
    "data_not_ready",
    "dead_zone",
    "min_score",
    "threshold_cross",
    "min_confidence",
    "min_indicators",
    "confluence_percent",
    "trend_alignment",
    "max_drawdown",
    "mtf_alignment",
    "trigger_signal",
    "divergence_required",
    "rsi_alone",
    "avoid_entry",
)
(
    G_DATA_NOT_READY,
    G_DEAD_ZONE,
    G_MIN_SCORE,
    G_THRESHOLD_CROSS,
    G_MIN_CONFIDENCE,
    G_MIN_INDICATORS,
    G_CONFLUENCE_PERCENT,
    G_TREND_ALIGNMENT,
    G_MAX_DRAWDOWN,
    G_MTF_ALIGNMENT,
    G_TRIGGER_SIGNAL,
    G_DIVERGENCE_REQUIRED,
    G_RSI_ALONE,
    G_AVOID_ENTRY,
) = range(14)

# Columns of a gate row.
GR_CODE, GR_PRESENT, GR_PASSED, GR_VALUE, GR_THRESHOLD = range(5)
GATE_COLUMNS = 5
# The most gates one call writes (dead_zone … rsi_alone, all switched on).
MAX_GATES = 12


def new_gates_out() -> npt.NDArray[np.float64]:
    """A ``gates_out`` array (MAX_GATES × GATE_COLUMNS, nothing present)."""
    return np.zeros((MAX_GATES, GATE_COLUMNS), dtype=np.float64)


@kernel
def threshold_k(ip: npt.NDArray[np.int64], fp: npt.NDArray[np.float64], atr_pct: float) -> float:
    """§9.2: T = base threshold + volatility boost; ``atr_pct`` NaN = unknown (no boost)."""
    base: float = fp[FP_G_MIN_SCORE]
    if ip[IP_VOL_BOOST] == 0 or math.isnan(atr_pct):
        return base
    if atr_pct >= fp[FP_BOOST_HIGH_ATR]:
        return base + float(fp[FP_BOOST_HIGH])
    if atr_pct >= fp[FP_BOOST_MEDIUM_ATR]:
        return base + float(fp[FP_BOOST_MEDIUM])
    return base


@kernel
def _put(gates_out: npt.NDArray[np.float64], n: int, code: int, passed: bool, value: float, thr: float) -> int:
    gates_out[n, GR_CODE] = code
    gates_out[n, GR_PRESENT] = 1.0
    gates_out[n, GR_PASSED] = 1.0 if passed else 0.0
    gates_out[n, GR_VALUE] = value
    gates_out[n, GR_THRESHOLD] = thr
    return n + 1


@kernel
def eval_gates(
    ip: npt.NDArray[np.int64],
    fp: npt.NDArray[np.float64],
    x: float,
    prev: float,
    atr_pct: float,
    confidence: float,
    agreeing: int,
    total_indicators: int,
    trend: int,
    drawdown_pct: float,
    mtf_passed: int,
    has_trigger: int,
    divergence_count: int,
    rsi_alone: int,
    gates_out: npt.NDArray[np.float64],
) -> int:
    """Gates 1–12 for the direction sign(x), in evaluation order; returns how many rows were written.

    ``mtf_passed`` / ``rsi_alone``: −1 = None (the gate is skipped), 0 / 1 = False / True; ``trend`` −1/0/+1."""
    nan = np.nan
    ax = abs(x)
    t = threshold_k(ip, fp, atr_pct)
    d = 1 if x > 0 else -1 if x < 0 else 0
    pct = agreeing / total_indicators if total_indicators else 0.0
    n = 0
    n = _put(gates_out, n, G_DEAD_ZONE, ax >= fp[FP_G_DEAD_ZONE], ax, fp[FP_G_DEAD_ZONE])
    n = _put(gates_out, n, G_MIN_SCORE, ax >= t, ax, t)
    if ip[IP_THRESHOLD_CROSS]:
        if d == 1:
            crossed = prev < t <= x
        elif d == -1:
            crossed = x <= -t < prev
        else:
            crossed = False
        n = _put(gates_out, n, G_THRESHOLD_CROSS, crossed, prev, t)
    n = _put(gates_out, n, G_MIN_CONFIDENCE, confidence >= fp[FP_G_MIN_CONFIDENCE], confidence, fp[FP_G_MIN_CONFIDENCE])
    n = _put(
        gates_out, n, G_MIN_INDICATORS, agreeing >= ip[IP_MIN_INDICATORS], float(agreeing), float(ip[IP_MIN_INDICATORS])
    )
    n = _put(gates_out, n, G_CONFLUENCE_PERCENT, pct >= fp[FP_G_CONFLUENCE], pct, fp[FP_G_CONFLUENCE])
    if ip[IP_REQ_TREND]:
        aligned = d != 0 and trend == d
        if ip[IP_NEUTRAL_TREND_BLOCKS] == 0 and trend == 0:
            aligned = True
        n = _put(gates_out, n, G_TREND_ALIGNMENT, aligned, float(trend), float(d))
    n = _put(gates_out, n, G_MAX_DRAWDOWN, drawdown_pct <= fp[FP_G_MAX_DRAWDOWN], drawdown_pct, fp[FP_G_MAX_DRAWDOWN])
    if ip[IP_REQ_MTF] and mtf_passed >= 0:
        n = _put(gates_out, n, G_MTF_ALIGNMENT, mtf_passed == 1, nan, nan)
    if ip[IP_REQ_TRIGGER]:
        n = _put(gates_out, n, G_TRIGGER_SIGNAL, has_trigger != 0, nan, nan)
    if ip[IP_REQ_DIVERGENCE]:
        n = _put(gates_out, n, G_DIVERGENCE_REQUIRED, divergence_count > 0, float(divergence_count), 1.0)
    if ip[IP_RSI_ALONE_GUARD] and rsi_alone >= 0:
        n = _put(gates_out, n, G_RSI_ALONE, rsi_alone == 0, nan, nan)
    for i in range(n, MAX_GATES):
        gates_out[i, GR_PRESENT] = 0.0
    return n


@kernel
def gates_passed(gates_out: npt.NDArray[np.float64], n: int) -> bool:
    """Whether the ``n`` rows written by ``eval_gates`` all passed."""
    for i in range(n):  # noqa: SIM110 - a plain loop compiles to the tightest code
        if gates_out[i, GR_PASSED] == 0.0:
            return False
    return True
