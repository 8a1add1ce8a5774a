"""Every config number the compiled scoring, MTF, confidence and gate code reads, as two flat arrays.

``score_params(cfg)`` builds them once per config (cached per config object): ``ip`` (int64: flags, counts and
masks) and ``fp`` (float64: weights, multipliers, caps, bonuses, thresholds). The offsets are module globals so
numba folds them into the compiled code. Per-indicator entries are in ``codes.INDICATORS`` order, strength and
category multipliers in ``codes.STRENGTHS`` / ``codes.CATEGORIES`` order. Gate numbers are the effective ones
(``cfg.effective_gates()``: STRICT's when strict mode is on).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from engine.config.strategy import StrategyConfig
from engine.scoring.codes import CATEGORIES, INDICATORS, N_CATEGORIES, N_INDICATORS, N_STRENGTHS, STRENGTHS

# --------------------------------------------------------------------------- ip (int64)
IP_DIRECTIONAL = 0  # + indicator index: 1 when the indicator counts as directional (§6)
IP_TRIGGER = IP_DIRECTIONAL + N_INDICATORS  # + category index: 1 when the category is a trigger (gate 10)
IP_COMBOS_ENABLED = IP_TRIGGER + N_CATEGORIES
IP_MTF_ENABLED = IP_COMBOS_ENABLED + 1
IP_ALLOW_PARTIAL = IP_MTF_ENABLED + 1
IP_PENALTIES_ENABLED = IP_ALLOW_PARTIAL + 1
IP_THRESHOLD_CROSS = IP_PENALTIES_ENABLED + 1  # effective (strict-aware)
IP_VOL_BOOST = IP_THRESHOLD_CROSS + 1
IP_REQ_TREND = IP_VOL_BOOST + 1
IP_NEUTRAL_TREND_BLOCKS = IP_REQ_TREND + 1
IP_REQ_MTF = IP_NEUTRAL_TREND_BLOCKS + 1
IP_REQ_TRIGGER = IP_REQ_MTF + 1
IP_REQ_DIVERGENCE = IP_REQ_TRIGGER + 1
IP_RSI_ALONE_GUARD = IP_REQ_DIVERGENCE + 1
IP_MIN_INDICATORS = IP_RSI_ALONE_GUARD + 1  # effective
N_IP = IP_MIN_INDICATORS + 1

# --------------------------------------------------------------------------- fp (float64)
FP_WEIGHT = 0  # + indicator index
FP_STRENGTH = FP_WEIGHT + N_INDICATORS  # + strength index
FP_CATEGORY = FP_STRENGTH + N_STRENGTHS  # + category index
FP_BASE_FRACTION = FP_CATEGORY + N_CATEGORIES
FP_INDICATOR_CAP = FP_BASE_FRACTION + 1
FP_TOTAL_CAP = FP_INDICATOR_CAP + 1
# §5.4 combination bonuses and the regime thresholds they read
FP_CB_EMA_CROSS_WITH_RSI = FP_TOTAL_CAP + 1
FP_CB_EMA_RSI_BUY_ABOVE = FP_CB_EMA_CROSS_WITH_RSI + 1
FP_CB_EMA_RSI_SELL_BELOW = FP_CB_EMA_RSI_BUY_ABOVE + 1
FP_CB_DIVERGENCE_WITH_TREND = FP_CB_EMA_RSI_SELL_BELOW + 1
FP_CB_PULLBACK_ENTRY = FP_CB_DIVERGENCE_WITH_TREND + 1
FP_CB_PULLBACK_BUY_BELOW = FP_CB_PULLBACK_ENTRY + 1
FP_CB_PULLBACK_SELL_ABOVE = FP_CB_PULLBACK_BUY_BELOW + 1
FP_CB_STRONG_ADX_TREND = FP_CB_PULLBACK_SELL_ABOVE + 1
FP_ADX_TREND = FP_CB_STRONG_ADX_TREND + 1
FP_ADX_STRONG_TREND = FP_ADX_TREND + 1
# §7.1 base confidence
FP_AGREEMENT_WEIGHT = FP_ADX_STRONG_TREND + 1
FP_AGREEMENT_BONUS_PER_INDICATOR = FP_AGREEMENT_WEIGHT + 1
FP_AGREEMENT_BONUS_MAX = FP_AGREEMENT_BONUS_PER_INDICATOR + 1
FP_DIVERGENCE_BONUS_PER_SIGNAL = FP_AGREEMENT_BONUS_MAX + 1
# §8 MTF score
FP_TF_PRIMARY_WEIGHT = FP_DIVERGENCE_BONUS_PER_SIGNAL + 1
FP_TF_CONFIRMATION_WEIGHT = FP_TF_PRIMARY_WEIGHT + 1
FP_TF_PARTIAL_PRIMARY_WEIGHT = FP_TF_CONFIRMATION_WEIGHT + 1
FP_TF_PARTIAL_CONFIRMATION_WEIGHT = FP_TF_PARTIAL_PRIMARY_WEIGHT + 1
FP_TF_MIN_PRIMARY_ABS = FP_TF_PARTIAL_CONFIRMATION_WEIGHT + 1
FP_TF_MAX_DIVERGENCE = FP_TF_MIN_PRIMARY_ABS + 1
FP_TF_FULL_ALIGNMENT_BONUS = FP_TF_MAX_DIVERGENCE + 1
FP_TF_LOW_DIV_BELOW10 = FP_TF_FULL_ALIGNMENT_BONUS + 1
FP_TF_LOW_DIV_BELOW15 = FP_TF_LOW_DIV_BELOW10 + 1
FP_TF_DIVERGENCE_SIGNAL_BONUS = FP_TF_LOW_DIV_BELOW15 + 1
# §7.2 MTF confidence
FP_MC_PRIMARY_WEIGHT = FP_TF_DIVERGENCE_SIGNAL_BONUS + 1
FP_MC_SECONDARY_WEIGHT = FP_MC_PRIMARY_WEIGHT + 1
FP_MC_FULL = FP_MC_SECONDARY_WEIGHT + 1
FP_MC_PARTIAL = FP_MC_FULL + 1
FP_MC_DIVERGENT = FP_MC_PARTIAL + 1
FP_MC_DIVERGENCE_SIGNAL = FP_MC_DIVERGENT + 1
FP_MC_AVG5 = FP_MC_DIVERGENCE_SIGNAL + 1
FP_MC_AVG4 = FP_MC_AVG5 + 1
# §7.3 penalties
FP_PEN_CHOP = FP_MC_AVG4 + 1
FP_PEN_CHOP_ATR_BELOW = FP_PEN_CHOP + 1
FP_PEN_CHOP_NET_BELOW = FP_PEN_CHOP_ATR_BELOW + 1
FP_PEN_VOL_MEDIUM = FP_PEN_CHOP_NET_BELOW + 1
FP_PEN_VOL_MEDIUM_ATR = FP_PEN_VOL_MEDIUM + 1
FP_PEN_VOL_HIGH = FP_PEN_VOL_MEDIUM_ATR + 1
FP_PEN_VOL_HIGH_ATR = FP_PEN_VOL_HIGH + 1
FP_PEN_CONFLICT = FP_PEN_VOL_HIGH_ATR + 1
# §9 gates (effective numbers) and the §9.2 volatility boost
FP_G_DEAD_ZONE = FP_PEN_CONFLICT + 1
FP_G_MIN_SCORE = FP_G_DEAD_ZONE + 1
FP_G_MIN_CONFIDENCE = FP_G_MIN_SCORE + 1
FP_G_CONFLUENCE = FP_G_MIN_CONFIDENCE + 1
FP_G_MAX_DRAWDOWN = FP_G_CONFLUENCE + 1
FP_BOOST_HIGH_ATR = FP_G_MAX_DRAWDOWN + 1
FP_BOOST_HIGH = FP_BOOST_HIGH_ATR + 1
FP_BOOST_MEDIUM_ATR = FP_BOOST_HIGH + 1
FP_BOOST_MEDIUM = FP_BOOST_MEDIUM_ATR + 1
# §5.5 classification bands
FP_CL_EXTREME_BUY = FP_BOOST_MEDIUM + 1
FP_CL_STRONG_BUY = FP_CL_EXTREME_BUY + 1
FP_CL_BUY = FP_CL_STRONG_BUY + 1
FP_CL_BUY_WEAK = FP_CL_BUY + 1
FP_CL_EXTREME_SELL = FP_CL_BUY_WEAK + 1
FP_CL_STRONG_SELL = FP_CL_EXTREME_SELL + 1
FP_CL_SELL = FP_CL_STRONG_SELL + 1
FP_CL_SELL_WEAK = FP_CL_SELL + 1
N_FP = FP_CL_SELL_WEAK + 1

_PARAMS: dict[int, tuple[StrategyConfig, tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]]] = {}


def score_params(cfg: StrategyConfig) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """``(ip, fp)`` of ``cfg`` for the scoring / gate kernels (cached per config object: never write to them)."""
    hit = _PARAMS.get(id(cfg))
    if hit is not None and hit[0] is cfg:
        return hit[1]
    ip = np.zeros(N_IP, dtype=np.int64)
    fp = np.zeros(N_FP, dtype=np.float64)
    for i, name in enumerate(INDICATORS):
        ind = cfg.indicators.get(name)
        ip[IP_DIRECTIONAL + i] = int(ind.directional)
        fp[FP_WEIGHT + i] = ind.weight
    triggers = cfg.gates.trigger_category_set
    for i, cat in enumerate(CATEGORIES):
        ip[IP_TRIGGER + i] = int(cat in triggers)
        fp[FP_CATEGORY + i] = cfg.signal_type_multipliers.get(cat)
    for i, strength in enumerate(STRENGTHS):
        fp[FP_STRENGTH + i] = cfg.strength_multipliers.get(strength)
    g, eff, sc, cb, conf = cfg.gates, cfg.effective_gates(), cfg.scoring, cfg.combination_bonuses, cfg.confidence
    tf, mc, pen, vol, cl = cfg.timeframes, conf.mtf, conf.penalties, cfg.volatility, sc.classification
    ip[IP_COMBOS_ENABLED] = int(cb.enabled)
    ip[IP_MTF_ENABLED] = int(tf.mtf_enabled)
    ip[IP_ALLOW_PARTIAL] = int(tf.allow_partial_alignment)
    ip[IP_PENALTIES_ENABLED] = int(pen.enabled)
    ip[IP_THRESHOLD_CROSS] = int(eff.threshold_cross_required)
    ip[IP_VOL_BOOST] = int(g.volatility_threshold_boost)
    ip[IP_REQ_TREND] = int(g.require_trend_alignment)
    ip[IP_NEUTRAL_TREND_BLOCKS] = int(g.neutral_trend_blocks)
    ip[IP_REQ_MTF] = int(g.require_mtf_alignment)
    ip[IP_REQ_TRIGGER] = int(g.require_trigger_signal)
    ip[IP_REQ_DIVERGENCE] = int(g.require_divergence)
    ip[IP_RSI_ALONE_GUARD] = int(g.rsi_alone_guard)
    ip[IP_MIN_INDICATORS] = eff.min_indicators_agreeing
    floats = {
        FP_BASE_FRACTION: sc.signal_base_points_fraction,
        FP_INDICATOR_CAP: sc.indicator_score_cap,
        FP_TOTAL_CAP: sc.total_score_cap,
        FP_CB_EMA_CROSS_WITH_RSI: cb.ema_cross_with_rsi,
        FP_CB_EMA_RSI_BUY_ABOVE: cb.ema_cross_rsi_buy_above,
        FP_CB_EMA_RSI_SELL_BELOW: cb.ema_cross_rsi_sell_below,
        FP_CB_DIVERGENCE_WITH_TREND: cb.divergence_with_trend,
        FP_CB_PULLBACK_ENTRY: cb.pullback_entry,
        FP_CB_PULLBACK_BUY_BELOW: cb.pullback_buy_rsi_below,
        FP_CB_PULLBACK_SELL_ABOVE: cb.pullback_sell_rsi_above,
        FP_CB_STRONG_ADX_TREND: cb.strong_adx_trend,
        FP_ADX_TREND: cfg.regime.adx_trend_threshold,
        FP_ADX_STRONG_TREND: cfg.regime.adx_strong_trend_threshold,
        FP_AGREEMENT_WEIGHT: conf.agreement_weight,
        FP_AGREEMENT_BONUS_PER_INDICATOR: conf.agreement_bonus_per_indicator,
        FP_AGREEMENT_BONUS_MAX: conf.agreement_bonus_max,
        FP_DIVERGENCE_BONUS_PER_SIGNAL: conf.divergence_bonus_per_signal,
        FP_TF_PRIMARY_WEIGHT: tf.primary_weight,
        FP_TF_CONFIRMATION_WEIGHT: tf.confirmation_weight,
        FP_TF_PARTIAL_PRIMARY_WEIGHT: tf.partial_primary_weight,
        FP_TF_PARTIAL_CONFIRMATION_WEIGHT: tf.partial_confirmation_weight,
        FP_TF_MIN_PRIMARY_ABS: tf.min_primary_abs_score,
        FP_TF_MAX_DIVERGENCE: tf.max_timeframe_divergence,
        FP_TF_FULL_ALIGNMENT_BONUS: tf.full_alignment_score_bonus,
        FP_TF_LOW_DIV_BELOW10: tf.low_divergence_bonus_below10,
        FP_TF_LOW_DIV_BELOW15: tf.low_divergence_bonus_below15,
        FP_TF_DIVERGENCE_SIGNAL_BONUS: tf.divergence_signal_score_bonus,
        FP_MC_PRIMARY_WEIGHT: mc.primary_weight,
        FP_MC_SECONDARY_WEIGHT: mc.secondary_weight,
        FP_MC_FULL: mc.full_alignment_bonus,
        FP_MC_PARTIAL: mc.partial_alignment_bonus,
        FP_MC_DIVERGENT: mc.divergent_alignment_penalty,
        FP_MC_DIVERGENCE_SIGNAL: mc.divergence_signal_bonus,
        FP_MC_AVG5: mc.avg_agreeing5_bonus,
        FP_MC_AVG4: mc.avg_agreeing4_bonus,
        FP_PEN_CHOP: pen.chop_penalty,
        FP_PEN_CHOP_ATR_BELOW: pen.chop_atr_pct_below,
        FP_PEN_CHOP_NET_BELOW: pen.chop_net_move_below,
        FP_PEN_VOL_MEDIUM: pen.vol_penalty_medium,
        FP_PEN_VOL_MEDIUM_ATR: pen.vol_medium_atr_pct,
        FP_PEN_VOL_HIGH: pen.vol_penalty_high,
        FP_PEN_VOL_HIGH_ATR: pen.vol_high_atr_pct,
        FP_PEN_CONFLICT: pen.conflict_penalty_per_signal,
        FP_G_DEAD_ZONE: eff.dead_zone_min,
        FP_G_MIN_SCORE: eff.min_score,
        FP_G_MIN_CONFIDENCE: eff.min_confidence,
        FP_G_CONFLUENCE: eff.confluence_percent_min,
        FP_G_MAX_DRAWDOWN: g.max_drawdown_pct,
        FP_BOOST_HIGH_ATR: float(vol.threshold_boost_high_atr_pct),
        FP_BOOST_HIGH: float(vol.threshold_boost_high),
        FP_BOOST_MEDIUM_ATR: float(vol.threshold_boost_medium_atr_pct),
        FP_BOOST_MEDIUM: float(vol.threshold_boost_medium),
        FP_CL_EXTREME_BUY: cl.extreme_buy_min,
        FP_CL_STRONG_BUY: cl.strong_buy_min,
        FP_CL_BUY: cl.buy_min,
        FP_CL_BUY_WEAK: cl.buy_weak_min,
        FP_CL_EXTREME_SELL: cl.extreme_sell_max,
        FP_CL_STRONG_SELL: cl.strong_sell_max,
        FP_CL_SELL: cl.sell_max,
        FP_CL_SELL_WEAK: cl.sell_weak_max,
    }
    if len(floats) != N_FP - FP_BASE_FRACTION:  # pragma: no cover - a layout edit that forgot a number
        raise RuntimeError("score_params: the fp layout and its values disagree")
    for k, v in floats.items():
        fp[k] = float(v)
    built = (ip, fp)
    _PARAMS[id(cfg)] = (cfg, built)
    return built
