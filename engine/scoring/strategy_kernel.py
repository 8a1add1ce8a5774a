"""One symbol's strategy per closed candle, compiled: the composition live and backtest share.

``timeframe_bar`` applies a closed candle to one timeframe (gap check and reset, indicators, the closes the chop
penalty reads, signal detectors); ``confirmation_bar`` scores the confirmation timeframe once it is ready;
``primary_bar`` decides; ``run_series`` drives all three over a whole history, building the confirmation candles as
``CandleAggregator`` does. ``SymbolPipeline`` calls the same per-bar functions once per candle from Python, so a
backtest and the live engine run the same machine code, bar for bar (tests/scoring/test_series.py holds them
equal over the shared data).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from engine.config.strategy import StrategyConfig, indicator_key
from engine.indicators.kernel import indicator_params, indicator_reset, indicator_step
from engine.indicators.layout import N_SNAP, S_ATR_PCT, S_BARS
from engine.indicators.params import IndicatorParams
from engine.jit import kernel
from engine.models import timeframe_ms
from engine.scoring.codes import INDICATORS, MAX_SIGNALS, N_INDICATORS, SIG_COLUMNS
from engine.scoring.detect_kernel import detect_reset, detect_step, detector_params
from engine.scoring.score_kernel import D_DIRECTION, D_FINAL_SCORE, D_PASSED, N_TF, decide, decide_once, score_tf

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

# The composition's own parameters (int64).
P_MIN_CANDLES = 0
P_MTF = 1
P_REQUIRE = 2  # gates.requireAoWhenEnabled: the timeframe's required indicators must be ready too
P_STEP_PRIMARY = 3
P_STEP_CONFIRMATION = 4
P_NEVER_PRIMARY = 5  # a required indicator that has no detector: that timeframe is never ready
P_NEVER_CONFIRMATION = 6
P_ENABLED = 7  # N_INDICATORS flags: the detector is enabled
P_REQUIRED_PRIMARY = P_ENABLED + N_INDICATORS
P_REQUIRED_CONFIRMATION = P_REQUIRED_PRIMARY + N_INDICATORS
N_PARAMS = P_REQUIRED_CONFIRMATION + N_INDICATORS

# A timeframe's bookkeeping (int64).
M_SEEN = 0  # a candle was applied
M_LAST_TS = 1
M_GAPS = 2
M_NSIG = 3  # signals in ``sig`` after the last candle
M_CLOSES_POS = 4  # next write position in the closes ring
M_CLOSES_LEN = 5
M_SCORED = 6  # the confirmation timeframe was ready, and scored into ``result``, at its last candle
N_META = 7

# The primary's carried state (float64).
C_PREV_SCORE = 0
C_READY = 1  # 1.0 when the last primary candle was decided (both timeframes ready), else 0.0
C_PREV_USED = 2  # the previous score the last primary candle was decided against
N_CARRY = 3

# Confirmation candles being built (float64): bucket open time, OHLCV, primary candles counted, one in progress.
A_TS, A_OPEN, A_HIGH, A_LOW, A_CLOSE, A_VOLUME, A_COUNT, A_ACTIVE = range(8)
N_AGG = 8


class TimeframeArrays(NamedTuple):
    """Everything one timeframe of one symbol holds, as arrays the compiled functions update in place."""

    ind_ip: I64
    ind_fp: F64
    ind_state: F64
    row: F64  # the snapshot of the last candle (engine/indicators/layout.py)
    det_ip: I64
    det_fp: F64
    det_state: F64
    sig: I64  # the last candle's signals of ready detectors (engine/scoring/codes.py)
    ready: I64  # per indicator: its detector is enabled and ready
    meta: I64
    closes: F64  # the last chopNetMoveBars + 1 closes, a ring
    result: F64  # the timeframe's score row when it was last scored (score_kernel's N_TF layout)


def strategy_params(cfg: StrategyConfig) -> I64:
    """The composition's parameters from ``cfg`` (see the P_ constants)."""
    tf = cfg.timeframes
    pp = np.zeros(N_PARAMS, np.int64)
    pp[P_MIN_CANDLES] = tf.min_candles
    pp[P_MTF] = tf.mtf_enabled
    pp[P_REQUIRE] = cfg.gates.require_ao_when_enabled
    pp[P_STEP_PRIMARY] = timeframe_ms(tf.primary)
    pp[P_STEP_CONFIRMATION] = timeframe_ms(tf.confirmation)
    for i, name in enumerate(INDICATORS):
        pp[P_ENABLED + i] = cfg.indicators.get(name).enabled
    for field, at, never_at in (
        (tf.primary_required_indicators, P_REQUIRED_PRIMARY, P_NEVER_PRIMARY),
        (tf.confirmation_required_indicators, P_REQUIRED_CONFIRMATION, P_NEVER_CONFIRMATION),
    ):
        mask, never = required_mask(field)
        pp[at : at + N_INDICATORS] = mask
        pp[never_at] = never
    return pp


def timeframe_arrays(cfg: StrategyConfig) -> TimeframeArrays:
    """A fresh timeframe: nothing applied yet."""
    ind_ip, ind_fp, ind_len = indicator_params(IndicatorParams.from_config(cfg))
    det_ip, det_fp, det_len = detector_params(cfg)
    arrays = TimeframeArrays(
        ind_ip,
        ind_fp,
        np.zeros(ind_len),
        np.full(N_SNAP, np.nan),
        det_ip,
        det_fp,
        np.zeros(det_len),
        np.zeros((MAX_SIGNALS, SIG_COLUMNS), np.int64),
        np.zeros(N_INDICATORS, np.int64),
        np.zeros(N_META, np.int64),
        np.zeros(cfg.confidence.penalties.chop_net_move_bars + 1),
        np.full(N_TF, np.nan),
    )
    indicator_reset(ind_ip, ind_fp, arrays.ind_state)
    detect_reset(det_ip, det_fp, arrays.det_state)
    return arrays


@kernel
def timeframe_bar(
    ind_ip: I64,
    ind_fp: F64,
    ind_state: F64,
    row: F64,
    det_ip: I64,
    det_fp: F64,
    det_state: F64,
    sig: I64,
    ready: I64,
    meta: I64,
    closes: F64,
    step: int,
    ts: int,
    o: float,
    h: float,
    lo: float,
    c: float,
    v: float,
) -> int:
    """Apply one closed candle; the bars missing before it, or −1 (nothing applied) if it is not after the last.

    A gap is never bridged: indicators, detectors and the closes start again from this candle."""
    missing = 0
    if meta[M_SEEN]:
        if ts <= meta[M_LAST_TS]:
            return -1
        missing = (ts - meta[M_LAST_TS]) // step - 1
        if missing:
            meta[M_GAPS] += 1
            indicator_reset(ind_ip, ind_fp, ind_state)
            detect_reset(det_ip, det_fp, det_state)
            meta[M_CLOSES_POS] = 0
            meta[M_CLOSES_LEN] = 0
    meta[M_SEEN] = 1
    meta[M_LAST_TS] = ts
    indicator_step(ind_ip, ind_fp, ind_state, o, h, lo, c, v, row)
    pos = meta[M_CLOSES_POS]
    closes[pos] = c
    meta[M_CLOSES_POS] = (pos + 1) % closes.shape[0]
    if meta[M_CLOSES_LEN] < closes.shape[0]:
        meta[M_CLOSES_LEN] += 1
    meta[M_NSIG] = detect_step(det_ip, det_fp, det_state, row, sig, ready)
    return missing


def required_names(required: str) -> tuple[str, ...]:
    """A ``timeframes.*RequiredIndicators`` value as snake_case indicator names: the JSON's own spelling
    (``emaTrend``), which the config accepts, matched no detector, so that timeframe was never ready."""
    return tuple(indicator_key(n.strip()) for n in required.split(",") if n.strip())


def required_mask(required: str) -> tuple[I64, bool]:
    """A timeframe's required indicators (``timeframes.*RequiredIndicators``) as a mask over INDICATORS, and
    whether one of them has no detector (that timeframe is then never ready, as in ``not_ready_reason``)."""
    mask = np.zeros(N_INDICATORS, np.int64)
    never = False
    for name in required_names(required):
        if name in INDICATORS:
            mask[INDICATORS.index(name)] = 1
        else:
            never = True
    return mask, never


@kernel
def timeframe_ready(pp: I64, row: F64, ready: I64, required: I64, never: bool) -> bool:
    """§2 warm-up: enough candles, every enabled detector ready and, with requireAoWhenEnabled, every required one."""
    if row[S_BARS] < pp[P_MIN_CANDLES]:
        return False
    for i in range(N_INDICATORS):
        if pp[P_ENABLED + i] and not ready[i]:
            return False
    if pp[P_REQUIRE]:
        if never:
            return False
        for i in range(N_INDICATORS):
            if required[i] and not ready[i]:
                return False
    return True


@kernel
def _required(pp: I64, at: int) -> I64:
    return pp[at : at + N_INDICATORS]


@kernel
def net_move(meta: I64, closes: F64) -> float:
    """§7.3 chop: |close − close n bars back| / close n bars back; NaN until n + 1 closes (or a zero close)."""
    size = closes.shape[0]
    if meta[M_CLOSES_LEN] < size:
        return math.nan
    oldest = closes[meta[M_CLOSES_POS]]  # the ring is full: the next write position holds the oldest
    if oldest == 0:
        return math.nan
    newest = closes[(meta[M_CLOSES_POS] - 1) % size]
    return float(abs(newest - oldest) / oldest)


@kernel
def aggregate(agg: F64, src_step: int, step: int, ts: int, o: float, h: float, lo: float, c: float, v: float) -> bool:
    """``CandleAggregator.update``: True when this primary candle completes a gap-free confirmation candle, which
    is then in ``agg`` (and a new bucket starts with the next call)."""
    bucket = ts - ts % step
    if agg[A_ACTIVE] == 0.0 or agg[A_TS] != bucket:
        agg[A_TS] = bucket
        agg[A_OPEN] = o
        agg[A_HIGH] = h
        agg[A_LOW] = lo
        agg[A_CLOSE] = c
        agg[A_VOLUME] = v
        agg[A_COUNT] = 1.0 if ts == bucket else 0.0  # a bucket joined mid-way can never complete
        agg[A_ACTIVE] = 1.0
    else:
        agg[A_HIGH] = max(agg[A_HIGH], h)
        agg[A_LOW] = min(agg[A_LOW], lo)
        agg[A_CLOSE] = c
        agg[A_VOLUME] = agg[A_VOLUME] + v
        if agg[A_COUNT]:
            agg[A_COUNT] += 1.0
    if ts + src_step == bucket + step:
        agg[A_ACTIVE] = 0.0
        return bool(agg[A_COUNT] == step // src_step)
    return False


@kernel
def confirmation_bar(
    pp: I64,
    sp_ip: I64,
    sp_fp: F64,
    ind_ip: I64,
    ind_fp: F64,
    ind_state: F64,
    row: F64,
    det_ip: I64,
    det_fp: F64,
    det_state: F64,
    sig: I64,
    ready: I64,
    meta: I64,
    closes: F64,
    result: F64,
    ts: int,
    o: float,
    h: float,
    lo: float,
    c: float,
    v: float,
) -> int:
    """A closed confirmation candle: applied, then scored if the timeframe is ready (``result`` NaN otherwise).
    Returns what ``timeframe_bar`` returns."""
    missing = timeframe_bar(
        ind_ip, ind_fp, ind_state, row, det_ip, det_fp, det_state, sig, ready, meta, closes,
        pp[P_STEP_CONFIRMATION], ts, o, h, lo, c, v,
    )  # fmt: skip
    if missing < 0:
        return missing
    if timeframe_ready(pp, row, ready, _required(pp, P_REQUIRED_CONFIRMATION), pp[P_NEVER_CONFIRMATION] == 1):
        score_tf(sp_ip, sp_fp, sig, meta[M_NSIG], ready, row, 0.0, result)
        meta[M_SCORED] = 1
    else:
        meta[M_SCORED] = 0
    return missing


@kernel
def primary_bar(
    pp: I64,
    sp_ip: I64,
    sp_fp: F64,
    ind_ip: I64,
    ind_fp: F64,
    ind_state: F64,
    row: F64,
    det_ip: I64,
    det_fp: F64,
    det_state: F64,
    sig: I64,
    ready: I64,
    meta: I64,
    closes: F64,
    result: F64,
    c_row: F64,
    c_ready: I64,
    c_meta: I64,
    c_result: F64,
    carry: F64,
    drawdown_pct: float,
    blocked: bool,
    out: F64,
    gates: F64,
    ts: int,
    o: float,
    h: float,
    lo: float,
    c: float,
    v: float,
) -> int:
    """A closed primary candle: applied, then decided into ``out`` / ``gates`` when both timeframes are ready
    (``carry[C_READY]`` says whether it was). Returns what ``timeframe_bar`` returns.

    ``blocked``: live's avoid-entry filter (Python, §11) already fails this bar, so the decision cannot pass and,
    as ever, a failing decision is not decided again without standalone RSI."""
    missing = timeframe_bar(
        ind_ip, ind_fp, ind_state, row, det_ip, det_fp, det_state, sig, ready, meta, closes,
        pp[P_STEP_PRIMARY], ts, o, h, lo, c, v,
    )  # fmt: skip
    if missing < 0:
        return missing
    if missing:
        carry[C_PREV_SCORE] = 0.0
    prev = carry[C_PREV_SCORE]
    carry[C_PREV_USED] = prev
    ok = timeframe_ready(pp, row, ready, _required(pp, P_REQUIRED_PRIMARY), pp[P_NEVER_PRIMARY] == 1)
    if ok and pp[P_MTF]:
        ok = timeframe_ready(pp, c_row, c_ready, _required(pp, P_REQUIRED_CONFIRMATION), pp[P_NEVER_CONFIRMATION] == 1)
    if not ok:
        carry[C_PREV_SCORE] = 0.0
        carry[C_READY] = 0.0
        return missing
    scored = c_meta[M_SCORED] == 1
    moved = net_move(meta, closes)
    if blocked:
        decide_once(
            sp_ip, sp_fp, sig, meta[M_NSIG], ready, row, result, c_result, scored, moved, prev, drawdown_pct, -1,
            out, gates,
        )  # fmt: skip
    else:
        decide(
            sp_ip, sp_fp, sig, meta[M_NSIG], ready, row, result, c_result, scored, moved, prev, drawdown_pct, out,
            gates,
        )  # fmt: skip
    carry[C_PREV_SCORE] = out[D_FINAL_SCORE]
    carry[C_READY] = 1.0
    return missing


@kernel
def run_series(
    pp: I64,
    sp_ip: I64,
    sp_fp: F64,
    p_ind_ip: I64,
    p_ind_fp: F64,
    p_ind_state: F64,
    p_row: F64,
    p_det_ip: I64,
    p_det_fp: F64,
    p_det_state: F64,
    p_sig: I64,
    p_ready: I64,
    p_meta: I64,
    p_closes: F64,
    p_result: F64,
    c_ind_ip: I64,
    c_ind_fp: F64,
    c_ind_state: F64,
    c_row: F64,
    c_det_ip: I64,
    c_det_fp: F64,
    c_det_state: F64,
    c_sig: I64,
    c_ready: I64,
    c_meta: I64,
    c_closes: F64,
    c_result: F64,
    carry: F64,
    agg: F64,
    out: F64,
    gates: F64,
    ts: I64,
    ohlcv: F64,
    passed: npt.NDArray[np.bool_],
    final_score: F64,
    direction: I64,
    atr_pct: F64,
) -> int:
    """Every candle of a history (time order), as the runner and the live engine feed them one by one: the
    confirmation candle it completes first, then the primary decision (max-drawdown gate at 0 %: the runner
    applies it). Returns the index of the first candle not after its predecessor, or −1."""
    p_step = pp[P_STEP_PRIMARY]
    c_step = pp[P_STEP_CONFIRMATION]
    for i in range(ts.shape[0]):
        t = ts[i]
        o, h, lo, c, v = ohlcv[i, 0], ohlcv[i, 1], ohlcv[i, 2], ohlcv[i, 3], ohlcv[i, 4]
        if aggregate(agg, p_step, c_step, t, o, h, lo, c, v):
            confirmation_bar(
                pp, sp_ip, sp_fp, c_ind_ip, c_ind_fp, c_ind_state, c_row, c_det_ip, c_det_fp, c_det_state, c_sig,
                c_ready, c_meta, c_closes, c_result, int(agg[A_TS]), agg[A_OPEN], agg[A_HIGH], agg[A_LOW],
                agg[A_CLOSE], agg[A_VOLUME],
            )  # fmt: skip
        status = primary_bar(
            pp, sp_ip, sp_fp, p_ind_ip, p_ind_fp, p_ind_state, p_row, p_det_ip, p_det_fp, p_det_state, p_sig,
            p_ready, p_meta, p_closes, p_result, c_row, c_ready, c_meta, c_result, carry, 0.0, False, out, gates,
            t, o, h, lo, c, v,
        )  # fmt: skip
        if status < 0:
            return i
        if carry[C_READY]:
            passed[i] = out[D_PASSED] != 0.0
            final_score[i] = out[D_FINAL_SCORE]
            direction[i] = int(out[D_DIRECTION])
        else:
            passed[i] = False
            final_score[i] = 0.0
            direction[i] = 0
        atr_pct[i] = p_row[S_ATR_PCT]
    return -1
