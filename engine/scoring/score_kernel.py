"""Spec §5–§9 compiled: one timeframe's score, the MTF combination, confidence, penalties, gates, the decision.

Plain functions over numpy arrays so live, paper and backtest run the same machine code. Inputs: the params of
``engine.scoring.params.score_params``, signal rows (``engine.scoring.codes``), a 0/1 readiness mask in
``INDICATORS`` order and the snapshot row (``engine.indicators.layout``, NaN = None). Outputs are float64 rows
whose columns are the constants below (NaN = None). Every float operation is the one the Python reference
(tests/scoring/reference_scoring.py) performs, in the same order; Python's ``sum()`` of floats (Neumaier
compensated since 3.12) is ``engine.pysum``.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from engine.gates.gate_kernel import eval_gates, gates_passed
from engine.indicators.layout import (
    S_ADX,
    S_ATR_PCT,
    S_CLOSE,
    S_EMA9,
    S_EMA50,
    S_EMA200,
    S_MINUS_DI,
    S_PLUS_DI,
    S_STOCH_RSI_RSI,
)
from engine.jit import kernel
from engine.pysum import sum_add, sum_end
from engine.scoring.codes import (
    I_RSI,
    K_DIVERGENCE,
    K_EMA_CROSS,
    K_GOLDEN_DEATH_CROSS,
    MAX_SIGNALS,
    N_INDICATORS,
    SIG_CATEGORY,
    SIG_DIRECTION,
    SIG_INDICATOR,
    SIG_KIND,
    SIG_STRENGTH,
)
from engine.scoring.detect_kernel import trend_direction_k
from engine.scoring.params import (
    FP_ADX_STRONG_TREND,
    FP_ADX_TREND,
    FP_AGREEMENT_BONUS_MAX,
    FP_AGREEMENT_BONUS_PER_INDICATOR,
    FP_AGREEMENT_WEIGHT,
    FP_BASE_FRACTION,
    FP_CATEGORY,
    FP_CB_DIVERGENCE_WITH_TREND,
    FP_CB_EMA_CROSS_WITH_RSI,
    FP_CB_EMA_RSI_BUY_ABOVE,
    FP_CB_EMA_RSI_SELL_BELOW,
    FP_CB_PULLBACK_BUY_BELOW,
    FP_CB_PULLBACK_ENTRY,
    FP_CB_PULLBACK_SELL_ABOVE,
    FP_CB_STRONG_ADX_TREND,
    FP_CL_BUY,
    FP_CL_BUY_WEAK,
    FP_CL_EXTREME_BUY,
    FP_CL_EXTREME_SELL,
    FP_CL_SELL,
    FP_CL_SELL_WEAK,
    FP_CL_STRONG_BUY,
    FP_CL_STRONG_SELL,
    FP_DIVERGENCE_BONUS_PER_SIGNAL,
    FP_INDICATOR_CAP,
    FP_MC_AVG4,
    FP_MC_AVG5,
    FP_MC_DIVERGENCE_SIGNAL,
    FP_MC_DIVERGENT,
    FP_MC_FULL,
    FP_MC_PARTIAL,
    FP_MC_PRIMARY_WEIGHT,
    FP_MC_SECONDARY_WEIGHT,
    FP_PEN_CHOP,
    FP_PEN_CHOP_ATR_BELOW,
    FP_PEN_CHOP_NET_BELOW,
    FP_PEN_CONFLICT,
    FP_PEN_VOL_HIGH,
    FP_PEN_VOL_HIGH_ATR,
    FP_PEN_VOL_MEDIUM,
    FP_PEN_VOL_MEDIUM_ATR,
    FP_STRENGTH,
    FP_TF_CONFIRMATION_WEIGHT,
    FP_TF_DIVERGENCE_SIGNAL_BONUS,
    FP_TF_FULL_ALIGNMENT_BONUS,
    FP_TF_LOW_DIV_BELOW10,
    FP_TF_LOW_DIV_BELOW15,
    FP_TF_MAX_DIVERGENCE,
    FP_TF_MIN_PRIMARY_ABS,
    FP_TF_PARTIAL_CONFIRMATION_WEIGHT,
    FP_TF_PARTIAL_PRIMARY_WEIGHT,
    FP_TF_PRIMARY_WEIGHT,
    FP_TOTAL_CAP,
    FP_WEIGHT,
    IP_ALLOW_PARTIAL,
    IP_COMBOS_ENABLED,
    IP_DIRECTIONAL,
    IP_MTF_ENABLED,
    IP_PENALTIES_ENABLED,
    IP_TRIGGER,
)

# --------------------------------------------------------------------------- the timeframe result row
TF_TOTAL = 0
TF_INDICATOR_SCORE = 1
TF_BULL_IND = 2
TF_BEAR_IND = 3
TF_TOTAL_INDICATORS = 4
TF_DIVERGENCES = 5
TF_CONFIDENCE = 6  # base confidence points (an integer)
TF_BULL_SIGNALS = 7
TF_BEAR_SIGNALS = 8
TF_MICRO = 9
TF_N_CONTRIB = 10  # how many indicators have a contribution (the dict's length)
TF_CONTRIB = 11  # + indicator index: the capped contribution, NaN when the indicator is not counted
TF_ORDER = TF_CONTRIB + N_INDICATORS  # + k: the indicator index of the k-th contribution (dict order), −1 after
# §5.4 combination bonuses in the order they are appended; a slot is present (1.0) or not (0.0).
COMBOS = ("emaCrossWithRsi", "emaCrossWithRsi", "divergenceWithTrend", "pullbackEntry", "strongAdxTrend")
CB_EMA_BULL, CB_EMA_BEAR, CB_DIVERGENCE, CB_PULLBACK, CB_STRONG_ADX = range(5)
N_COMBOS = 5
TF_COMBO_PRESENT = TF_ORDER + N_INDICATORS  # + slot
TF_COMBO_VALUE = TF_COMBO_PRESENT + N_COMBOS  # + slot
TF_POINTS = TF_COMBO_VALUE + N_COMBOS  # + signal row index: the signal's signed points, NaN when not counted
N_TF = TF_POINTS + MAX_SIGNALS

# --------------------------------------------------------------------------- the decision row
ALIGNMENTS = ("full", "partial", "divergent")
AL_FULL, AL_PARTIAL, AL_DIVERGENT = range(3)
CLASSES = (
    "EXTREME_BUY",
    "STRONG_BUY",
    "BUY",
    "BUY_WEAK",
    "NEUTRAL",
    "SELL_WEAK",
    "SELL",
    "STRONG_SELL",
    "EXTREME_SELL",
)
CL_EXTREME_BUY, CL_STRONG_BUY, CL_BUY, CL_BUY_WEAK, CL_NEUTRAL, CL_SELL_WEAK, CL_SELL, CL_STRONG_SELL = range(8)
CL_EXTREME_SELL = 8
D_FINAL_SCORE = 0
D_CLASS = 1  # index into CLASSES
D_DIRECTION = 2  # −1 / 0 / +1
D_CONFIDENCE = 3  # final confidence in [0, 1]
D_CONF_POINTS = 4  # Combined.confidence_points (an integer)
D_ALIGNMENT = 5  # index into ALIGNMENTS, −1 = None
D_WEIGHTED = 6
D_GAP = 7  # NaN = None
D_ALIGN_BONUS = 8
D_MTF_PASSED = 9  # −1 = None, 0 / 1
D_CHOPPY = 10  # 0 / 1
D_VOL_PENALTY = 11
D_CONFLICTS = 12
D_PEN_TOTAL = 13
D_AGREEING = 14
D_HAS_TRIGGER = 15  # 0 / 1
D_TREND = 16  # −1 / 0 / +1
D_RSI_ALONE = 17  # −1 = None, 0 / 1
D_PASSED = 18  # 1 when every kernel gate passed
D_N_GATES = 19  # rows written to gates_out
N_DECISION = 20


def new_tf_row() -> npt.NDArray[np.float64]:
    """A timeframe result row (all NaN until ``score_tf`` writes it)."""
    return np.full(N_TF, np.nan, dtype=np.float64)


def new_decision_row() -> npt.NDArray[np.float64]:
    """A decision row (all NaN until ``decide`` writes it)."""
    return np.full(N_DECISION, np.nan, dtype=np.float64)


# --------------------------------------------------------------------------- Python's float semantics


@kernel
def _clamp(x: float, lo: float, hi: float) -> float:
    """``min(hi, max(lo, x))`` with Python's min/max (the first argument wins a tie)."""
    m = x if x > lo else lo
    return m if m < hi else hi


@kernel
def round_half_up(x: float) -> float:
    """The spec's rounding (never banker's rounding)."""
    return math.floor(x + 0.5)


@kernel
def _tf_direction(total: float) -> int:
    """§5.5: bullish at ≥ 40, bearish at ≤ −40."""
    if total >= 40.0:
        return 1
    if total <= -40.0:
        return -1
    return 0


@kernel
def classify_k(fp: npt.NDArray[np.float64], x: float) -> int:
    """§5.5 classification bands: an index into ``CLASSES``."""
    if x >= fp[FP_CL_EXTREME_BUY]:
        return CL_EXTREME_BUY
    if x >= fp[FP_CL_STRONG_BUY]:
        return CL_STRONG_BUY
    if x >= fp[FP_CL_BUY]:
        return CL_BUY
    if x >= fp[FP_CL_BUY_WEAK]:
        return CL_BUY_WEAK
    if x <= fp[FP_CL_EXTREME_SELL]:
        return CL_EXTREME_SELL
    if x <= fp[FP_CL_STRONG_SELL]:
        return CL_STRONG_SELL
    if x <= fp[FP_CL_SELL]:
        return CL_SELL
    if x <= fp[FP_CL_SELL_WEAK]:
        return CL_SELL_WEAK
    return CL_NEUTRAL


@kernel
def base_confidence_k(
    fp: npt.NDArray[np.float64], bull_sum: float, bear_sum: float, max_agreeing: int, divergences: int
) -> float:
    """§7.1 from the (compensated) sums of the bullish / bearish strength multipliers; an integer as a float."""
    if bull_sum + bear_sum == 0:
        return 0.0
    agreement = abs(bull_sum - bear_sum) / (bull_sum + bear_sum)
    per = fp[FP_AGREEMENT_BONUS_PER_INDICATOR] * max_agreeing
    cap = fp[FP_AGREEMENT_BONUS_MAX]
    points = (
        fp[FP_AGREEMENT_WEIGHT] * agreement
        + (per if per < cap else cap)
        + fp[FP_DIVERGENCE_BONUS_PER_SIGNAL] * divergences
    )
    return round_half_up(_clamp(points, 0.0, 100.0))


@kernel
def _score(
    ip: npt.NDArray[np.int64],
    fp: npt.NDArray[np.float64],
    sig: npt.NDArray[np.int64],
    nsig: int,
    ready: npt.NDArray[np.int64],
    skip: int,
    row: npt.NDArray[np.float64],
    micro_score: float,
    out: npt.NDArray[np.float64],
) -> None:
    """``score_tf`` with indicator ``skip`` (≥ 0) treated as not ready (the rsi_alone re-decision)."""
    nan = np.nan
    for k in range(N_INDICATORS):
        out[TF_CONTRIB + k] = nan
        out[TF_ORDER + k] = -1.0
    n_order = 0
    for k in range(N_INDICATORS):  # dict.fromkeys(directional, 0.0): the ready directional ones, in order
        if ready[k] != 0 and k != skip and ip[IP_DIRECTIONAL + k] != 0:
            out[TF_CONTRIB + k] = 0.0
            out[TF_ORDER + n_order] = k
            n_order += 1
    n_directional = n_order
    fraction = fp[FP_BASE_FRACTION]
    bull_f = bull_c = bear_f = bear_c = 0.0
    n_bull = n_bear = divergences = 0
    cross_bull = cross_bear = div_bull = div_bear = False
    for i in range(nsig):  # §5.1 points, the per-indicator sums, the sides and the divergences
        ind = sig[i, SIG_INDICATOR]
        if ready[ind] == 0 or ind == skip:
            out[TF_POINTS + i] = nan
            continue
        mult = fp[FP_STRENGTH + sig[i, SIG_STRENGTH]]
        pts = fp[FP_WEIGHT + ind] * fraction * mult * fp[FP_CATEGORY + sig[i, SIG_CATEGORY]]
        direction = sig[i, SIG_DIRECTION]
        if direction == 1:
            bull_f, bull_c = sum_add(bull_f, bull_c, mult)
            n_bull += 1
        else:
            pts = -pts
            if direction == -1:
                bear_f, bear_c = sum_add(bear_f, bear_c, mult)
                n_bear += 1
        out[TF_POINTS + i] = pts
        cur = out[TF_CONTRIB + ind]
        if math.isnan(cur):  # a ready indicator that is not directional: added to the dict on its first signal
            out[TF_CONTRIB + ind] = 0.0 + pts
            out[TF_ORDER + n_order] = ind
            n_order += 1
        else:
            out[TF_CONTRIB + ind] = cur + pts
        kind = sig[i, SIG_KIND]
        if kind == K_DIVERGENCE:
            divergences += 1
            if direction == 1:
                div_bull = True
            elif direction == -1:
                div_bear = True
        elif kind in (K_EMA_CROSS, K_GOLDEN_DEATH_CROSS):
            if direction == 1:
                cross_bull = True
            elif direction == -1:
                cross_bear = True
    s_f = s_c = 0.0
    for k in range(n_order):  # §5.2: each indicator capped at ± its weight; then their compensated sum
        ind = int(out[TF_ORDER + k])
        v = out[TF_CONTRIB + ind]
        w = fp[FP_WEIGHT + ind]
        v = w if v > w else -w if v < -w else v
        out[TF_CONTRIB + ind] = v
        s_f, s_c = sum_add(s_f, s_c, v)
    cap = fp[FP_INDICATOR_CAP]
    indicator_score = _clamp(sum_end(s_f, s_c), -cap, cap)
    # §5.4 combination bonuses (trending = ADX ≥ threshold; RSI = RSI(14) inside StochRSI)
    for j in range(N_COMBOS):
        out[TF_COMBO_PRESENT + j] = 0.0
        out[TF_COMBO_VALUE + j] = 0.0
    adx, pdi, mdi, rsi = row[S_ADX], row[S_PLUS_DI], row[S_MINUS_DI], row[S_STOCH_RSI_RSI]
    if ip[IP_COMBOS_ENABLED] != 0 and not (math.isnan(adx) or math.isnan(pdi) or math.isnan(mdi)):
        trending = adx >= fp[FP_ADX_TREND]
        has_rsi = not math.isnan(rsi)
        if trending and has_rsi:
            if cross_bull and rsi > fp[FP_CB_EMA_RSI_BUY_ABOVE]:
                out[TF_COMBO_PRESENT + CB_EMA_BULL] = 1.0
                out[TF_COMBO_VALUE + CB_EMA_BULL] = fp[FP_CB_EMA_CROSS_WITH_RSI]
            if cross_bear and rsi < fp[FP_CB_EMA_RSI_SELL_BELOW]:
                out[TF_COMBO_PRESENT + CB_EMA_BEAR] = 1.0
                out[TF_COMBO_VALUE + CB_EMA_BEAR] = -fp[FP_CB_EMA_CROSS_WITH_RSI]
        if trending:
            if div_bull and pdi > mdi:
                out[TF_COMBO_PRESENT + CB_DIVERGENCE] = 1.0
                out[TF_COMBO_VALUE + CB_DIVERGENCE] = fp[FP_CB_DIVERGENCE_WITH_TREND]
            if div_bear and mdi > pdi:  # exclusive with the bullish one (pdi > mdi)
                out[TF_COMBO_PRESENT + CB_DIVERGENCE] = 1.0
                out[TF_COMBO_VALUE + CB_DIVERGENCE] = -fp[FP_CB_DIVERGENCE_WITH_TREND]
        ema9, ema50 = row[S_EMA9], row[S_EMA50]
        if trending and has_rsi and not (math.isnan(ema9) or math.isnan(ema50)):
            if ema9 > ema50 and rsi < fp[FP_CB_PULLBACK_BUY_BELOW]:
                out[TF_COMBO_PRESENT + CB_PULLBACK] = 1.0
                out[TF_COMBO_VALUE + CB_PULLBACK] = fp[FP_CB_PULLBACK_ENTRY]
            elif ema9 < ema50 and rsi > fp[FP_CB_PULLBACK_SELL_ABOVE]:
                out[TF_COMBO_PRESENT + CB_PULLBACK] = 1.0
                out[TF_COMBO_VALUE + CB_PULLBACK] = -fp[FP_CB_PULLBACK_ENTRY]
        if adx >= fp[FP_ADX_STRONG_TREND]:
            if pdi > mdi:
                out[TF_COMBO_PRESENT + CB_STRONG_ADX] = 1.0
                out[TF_COMBO_VALUE + CB_STRONG_ADX] = fp[FP_CB_STRONG_ADX_TREND]
            elif mdi > pdi:
                out[TF_COMBO_PRESENT + CB_STRONG_ADX] = 1.0
                out[TF_COMBO_VALUE + CB_STRONG_ADX] = -fp[FP_CB_STRONG_ADX_TREND]
    c_f = c_c = 0.0
    for j in range(N_COMBOS):
        if out[TF_COMBO_PRESENT + j] != 0.0:
            c_f, c_c = sum_add(c_f, c_c, out[TF_COMBO_VALUE + j])
    total_cap = fp[FP_TOTAL_CAP]
    tf_total = _clamp(indicator_score + micro_score + sum_end(c_f, c_c), -total_cap, total_cap)
    bull_ind = bear_ind = counted = 0  # §6: standalone RSI never counts as an agreeing indicator
    for k in range(n_directional):
        ind = int(out[TF_ORDER + k])
        if ind == I_RSI:
            continue
        counted += 1
        c = out[TF_CONTRIB + ind]
        if c > 0:
            bull_ind += 1
        elif c < 0:
            bear_ind += 1
    max_agreeing = bull_ind if bull_ind >= bear_ind else bear_ind
    conf = base_confidence_k(fp, sum_end(bull_f, bull_c), sum_end(bear_f, bear_c), max_agreeing, divergences)
    out[TF_TOTAL] = tf_total
    out[TF_INDICATOR_SCORE] = indicator_score
    out[TF_BULL_IND] = bull_ind
    out[TF_BEAR_IND] = bear_ind
    out[TF_TOTAL_INDICATORS] = counted
    out[TF_DIVERGENCES] = divergences
    out[TF_CONFIDENCE] = conf
    out[TF_BULL_SIGNALS] = n_bull
    out[TF_BEAR_SIGNALS] = n_bear
    out[TF_MICRO] = micro_score
    out[TF_N_CONTRIB] = n_order


@kernel
def score_tf(
    ip: npt.NDArray[np.int64],
    fp: npt.NDArray[np.float64],
    sig: npt.NDArray[np.int64],
    nsig: int,
    ready: npt.NDArray[np.int64],
    row: npt.NDArray[np.float64],
    micro_score: float,
    out: npt.NDArray[np.float64],
) -> None:
    """§5.1–§5.5, §6 and §7.1 for one timeframe into the timeframe result row ``out`` (N_TF floats)."""
    _score(ip, fp, sig, nsig, ready, -1, row, micro_score, out)


# --------------------------------------------------------------------------- MTF, penalties, confidence


@kernel
def _max_agreeing(tf: npt.NDArray[np.float64]) -> float:
    b: float = tf[TF_BULL_IND]
    s: float = tf[TF_BEAR_IND]
    return b if b >= s else s


@kernel
def combine_k(
    ip: npt.NDArray[np.int64],
    fp: npt.NDArray[np.float64],
    p_out: npt.NDArray[np.float64],
    c_out: npt.NDArray[np.float64],
    has_confirmation: bool,
    out: npt.NDArray[np.float64],
) -> None:
    """§8 and §7.2 into the decision row's combined fields; without MTF or a confirmation the primary stands alone."""
    p_tot = p_out[TF_TOTAL]
    if ip[IP_MTF_ENABLED] == 0 or not has_confirmation:
        out[D_FINAL_SCORE] = p_tot
        out[D_CONF_POINTS] = p_out[TF_CONFIDENCE]
        out[D_ALIGNMENT] = -1.0
        out[D_WEIGHTED] = p_tot
        out[D_GAP] = np.nan
        out[D_ALIGN_BONUS] = 0.0
        out[D_MTF_PASSED] = -1.0
        return
    s_tot = c_out[TF_TOTAL]
    pd, sd = _tf_direction(p_tot), _tf_direction(s_tot)
    if pd == sd and pd != 0:
        align = AL_FULL
    elif pd == 0 or sd == 0:
        align = AL_PARTIAL
    else:
        align = AL_DIVERGENT
    if align == AL_FULL:
        w = fp[FP_TF_PRIMARY_WEIGHT] * p_tot + fp[FP_TF_CONFIRMATION_WEIGHT] * s_tot
    elif align == AL_PARTIAL:
        w = fp[FP_TF_PARTIAL_PRIMARY_WEIGHT] * p_tot + fp[FP_TF_PARTIAL_CONFIRMATION_WEIGHT] * s_tot
    else:
        w = p_tot
    gap = abs(p_tot - s_tot)
    divs = p_out[TF_DIVERGENCES] + c_out[TF_DIVERGENCES]
    bonus = fp[FP_TF_DIVERGENCE_SIGNAL_BONUS] * divs
    if align == AL_FULL:
        bonus += fp[FP_TF_FULL_ALIGNMENT_BONUS]
        if gap < 10:
            bonus += fp[FP_TF_LOW_DIV_BELOW10]
        elif gap < 15:
            bonus += fp[FP_TF_LOW_DIV_BELOW15]
    sign = 1.0 if w > 0 else -1.0 if w < 0 else 0.0
    cap = fp[FP_TOTAL_CAP]
    final = _clamp(w + sign * bonus, -cap, cap)
    if align == AL_FULL:
        align_conf = fp[FP_MC_FULL]
    elif align == AL_PARTIAL:
        align_conf = fp[FP_MC_PARTIAL]
    else:
        align_conf = fp[FP_MC_DIVERGENT]
    avg_agreeing = (_max_agreeing(p_out) + _max_agreeing(c_out)) / 2
    agree_bonus = fp[FP_MC_AVG5] if avg_agreeing >= 5 else fp[FP_MC_AVG4] if avg_agreeing >= 4 else 0.0
    c_mtf = round_half_up(
        _clamp(
            fp[FP_MC_PRIMARY_WEIGHT] * p_out[TF_CONFIDENCE]
            + fp[FP_MC_SECONDARY_WEIGHT] * c_out[TF_CONFIDENCE]
            + align_conf
            + fp[FP_MC_DIVERGENCE_SIGNAL] * divs
            + agree_bonus,
            0.0,
            100.0,
        )
    )
    gate_ok = (
        (align == AL_FULL or (align == AL_PARTIAL and ip[IP_ALLOW_PARTIAL] != 0))
        and abs(p_tot) >= fp[FP_TF_MIN_PRIMARY_ABS]
        and (sd == 0 or gap <= fp[FP_TF_MAX_DIVERGENCE])
    )
    out[D_FINAL_SCORE] = final
    out[D_CONF_POINTS] = c_mtf
    out[D_ALIGNMENT] = align
    out[D_WEIGHTED] = w
    out[D_GAP] = gap
    out[D_ALIGN_BONUS] = bonus
    out[D_MTF_PASSED] = 1.0 if gate_ok else 0.0


@kernel
def penalties_k(
    ip: npt.NDArray[np.int64],
    fp: npt.NDArray[np.float64],
    atr_pct: float,
    net_move: float,
    p_out: npt.NDArray[np.float64],
    out: npt.NDArray[np.float64],
) -> None:
    """§7.3 into the decision row's penalty fields (``atr_pct`` / ``net_move`` NaN = None)."""
    if ip[IP_PENALTIES_ENABLED] == 0:
        out[D_CHOPPY] = 0.0
        out[D_VOL_PENALTY] = 0.0
        out[D_CONFLICTS] = 0.0
        out[D_PEN_TOTAL] = 0.0
        return
    has_atr = not math.isnan(atr_pct)
    choppy = (
        has_atr
        and not math.isnan(net_move)
        and atr_pct < fp[FP_PEN_CHOP_ATR_BELOW]
        and net_move < fp[FP_PEN_CHOP_NET_BELOW]
    )
    vol = 0.0
    if has_atr:
        if atr_pct >= fp[FP_PEN_VOL_HIGH_ATR]:
            vol = fp[FP_PEN_VOL_HIGH]
        elif atr_pct >= fp[FP_PEN_VOL_MEDIUM_ATR]:
            vol = fp[FP_PEN_VOL_MEDIUM]
    b, s = p_out[TF_BULL_SIGNALS], p_out[TF_BEAR_SIGNALS]
    conflicts = b if b < s else s
    total = (fp[FP_PEN_CHOP] if choppy else 0.0) + vol + fp[FP_PEN_CONFLICT] * conflicts
    out[D_CHOPPY] = 1.0 if choppy else 0.0
    out[D_VOL_PENALTY] = vol
    out[D_CONFLICTS] = conflicts
    out[D_PEN_TOTAL] = total


@kernel
def final_confidence_k(c_mtf: float, pen_total: float) -> float:
    """C_final / 100, clamped to [0, 1]."""
    return _clamp(c_mtf - pen_total, 0.0, 100.0) / 100.0


# --------------------------------------------------------------------------- the decision


@kernel
def _decide_once(
    ip: npt.NDArray[np.int64],
    fp: npt.NDArray[np.float64],
    p_sig: npt.NDArray[np.int64],
    p_nsig: int,
    p_ready: npt.NDArray[np.int64],
    skip: int,
    p_row: npt.NDArray[np.float64],
    p_out: npt.NDArray[np.float64],
    c_out: npt.NDArray[np.float64],
    has_confirmation: bool,
    net_move: float,
    prev_score: float,
    drawdown_pct: float,
    rsi_alone: int,
    out: npt.NDArray[np.float64],
    gates_out: npt.NDArray[np.float64],
) -> bool:
    _score(ip, fp, p_sig, p_nsig, p_ready, skip, p_row, 0.0, p_out)
    combine_k(ip, fp, p_out, c_out, has_confirmation, out)
    x = out[D_FINAL_SCORE]
    atr_pct = p_row[S_ATR_PCT]
    penalties_k(ip, fp, atr_pct, net_move, p_out, out)
    confidence = final_confidence_k(out[D_CONF_POINTS], out[D_PEN_TOTAL])
    d = 1 if x > 0 else -1 if x < 0 else 0
    agreeing = int(p_out[TF_BULL_IND]) if d == 1 else int(p_out[TF_BEAR_IND]) if d == -1 else 0
    trend = trend_direction_k(p_row[S_CLOSE], p_row[S_EMA9], p_row[S_EMA50], p_row[S_EMA200])
    has_trigger = 0
    for i in range(p_nsig):  # gate 10: a trigger category in the decision's direction, never standalone RSI
        ind = p_sig[i, SIG_INDICATOR]
        if (
            p_ready[ind] != 0
            and ind not in (skip, I_RSI)
            and p_sig[i, SIG_DIRECTION] == d
            and ip[IP_TRIGGER + p_sig[i, SIG_CATEGORY]] != 0
        ):
            has_trigger = 1
            break
    n = eval_gates(
        ip,
        fp,
        x,
        prev_score,
        atr_pct,
        confidence,
        agreeing,
        int(p_out[TF_TOTAL_INDICATORS]),
        trend,
        drawdown_pct,
        int(out[D_MTF_PASSED]),
        has_trigger,
        int(p_out[TF_DIVERGENCES]),
        rsi_alone,
        gates_out,
    )
    passed = gates_passed(gates_out, n)
    out[D_CLASS] = classify_k(fp, x)
    out[D_DIRECTION] = d
    out[D_CONFIDENCE] = confidence
    out[D_AGREEING] = agreeing
    out[D_HAS_TRIGGER] = has_trigger
    out[D_TREND] = trend
    out[D_RSI_ALONE] = rsi_alone
    out[D_PASSED] = 1.0 if passed else 0.0
    out[D_N_GATES] = n
    return passed


@kernel
def decide_once(
    ip: npt.NDArray[np.int64],
    fp: npt.NDArray[np.float64],
    p_sig: npt.NDArray[np.int64],
    p_nsig: int,
    p_ready: npt.NDArray[np.int64],
    p_row: npt.NDArray[np.float64],
    p_out: npt.NDArray[np.float64],
    c_out: npt.NDArray[np.float64],
    has_confirmation: bool,
    net_move: float,
    prev_score: float,
    drawdown_pct: float,
    rsi_alone: int,
    out: npt.NDArray[np.float64],
    gates_out: npt.NDArray[np.float64],
) -> None:
    """One ``_decide`` with a given ``rsi_alone`` (−1 = None, 0 / 1), without the rsi_alone re-decision.

    For the live path whose Python-only avoid_entry gate already failed: the reference then never re-decides."""
    _decide_once(
        ip,
        fp,
        p_sig,
        p_nsig,
        p_ready,
        -1,
        p_row,
        p_out,
        c_out,
        has_confirmation,
        net_move,
        prev_score,
        drawdown_pct,
        rsi_alone,
        out,
        gates_out,
    )


@kernel
def decide(
    ip: npt.NDArray[np.int64],
    fp: npt.NDArray[np.float64],
    p_sig: npt.NDArray[np.int64],
    p_nsig: int,
    p_ready: npt.NDArray[np.int64],
    p_row: npt.NDArray[np.float64],
    p_out: npt.NDArray[np.float64],
    c_out: npt.NDArray[np.float64],
    has_confirmation: bool,
    net_move: float,
    prev_score: float,
    drawdown_pct: float,
    out: npt.NDArray[np.float64],
    gates_out: npt.NDArray[np.float64],
) -> None:
    """The primary bar's decision of a ready timeframe, with §9.3 gate 11 (rsi_alone).

    When standalone RSI is ready and the decision passes, it is decided again without RSI's signals and readiness,
    then once more (the final one, into ``p_out`` / ``out`` / ``gates_out``) with rsi_alone = not that passed."""
    passed = _decide_once(
        ip,
        fp,
        p_sig,
        p_nsig,
        p_ready,
        -1,
        p_row,
        p_out,
        c_out,
        has_confirmation,
        net_move,
        prev_score,
        drawdown_pct,
        -1,
        out,
        gates_out,
    )
    if p_ready[I_RSI] != 0 and passed:
        without = _decide_once(
            ip,
            fp,
            p_sig,
            p_nsig,
            p_ready,
            I_RSI,
            p_row,
            p_out,
            c_out,
            has_confirmation,
            net_move,
            prev_score,
            drawdown_pct,
            -1,
            out,
            gates_out,
        )
        _decide_once(
            ip,
            fp,
            p_sig,
            p_nsig,
            p_ready,
            -1,
            p_row,
            p_out,
            c_out,
            has_confirmation,
            net_move,
            prev_score,
            drawdown_pct,
            0 if without else 1,
            out,
            gates_out,
        )
