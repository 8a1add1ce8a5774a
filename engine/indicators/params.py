"""Indicator parameters: spec defaults, or built from the strategy config."""

from __future__ import annotations

from dataclasses import dataclass

from engine.config.strategy import StrategyConfig


@dataclass(frozen=True, slots=True)
class IndicatorParams:
    """Every period and factor the indicator set needs; defaults equal spec §3."""

    rsi_enabled: bool = False
    rsi_period: int = 21
    stoch_rsi_rsi_period: int = 14
    stoch_rsi_stoch_period: int = 14
    stoch_rsi_k_smooth: int = 3
    stoch_rsi_d_smooth: int = 3
    stoch_k_period: int = 14
    stoch_k_smooth: int = 3
    stoch_d_period: int = 3
    williams_period: int = 10
    kdj_period: int = 9
    kdj_k_smooth: int = 3
    kdj_d_smooth: int = 3
    kdj_initial: float = 50.0
    ao_fast: int = 5
    ao_slow: int = 34
    ao_ac_period: int = 5
    ema_short: int = 9
    ema_long: int = 50
    ema_mid_trend: int = 100
    ema_trend: int = 200
    macd_fast: int = 12
    macd_slow: int = 26
    macd_signal: int = 9
    bb_period: int = 20
    bb_std_dev: float = 2.0
    keltner_period: int = 20
    keltner_multiplier: float = 1.5
    obv_slope_window: int = 14
    obv_slope_history: int = 100
    obv_min_slope_samples: int = 5
    obv_z_cap: float = 2.0
    atr_period: int = 14
    adx_period: int = 14

    @classmethod
    def from_config(cls, cfg: StrategyConfig) -> IndicatorParams:
        ind = cfg.indicators
        return cls(
            rsi_enabled=ind.rsi.enabled,
            rsi_period=ind.rsi.params.period,
            stoch_rsi_rsi_period=ind.stoch_rsi.params.rsi_period,
            stoch_rsi_stoch_period=ind.stoch_rsi.params.stoch_period,
            stoch_rsi_k_smooth=ind.stoch_rsi.params.k_smooth,
            stoch_rsi_d_smooth=ind.stoch_rsi.params.d_smooth,
            stoch_k_period=ind.stochastic.params.k_period,
            stoch_k_smooth=ind.stochastic.params.k_smooth,
            stoch_d_period=ind.stochastic.params.d_period,
            williams_period=ind.williams_r.params.period,
            kdj_period=ind.kdj.params.period,
            kdj_k_smooth=ind.kdj.params.k_smooth,
            kdj_d_smooth=ind.kdj.params.d_smooth,
            kdj_initial=ind.kdj.params.kd_initial,
            ao_fast=ind.ao.params.fast_period,
            ao_slow=ind.ao.params.slow_period,
            ao_ac_period=ind.ao.params.ac_period,
            ema_short=ind.ema_trend.params.short_period,
            ema_long=ind.ema_trend.params.long_period,
            ema_mid_trend=ind.ema_trend.params.mid_trend_period,
            ema_trend=ind.ema_trend.params.trend_period,
            macd_fast=ind.macd.params.fast_period,
            macd_slow=ind.macd.params.slow_period,
            macd_signal=ind.macd.params.signal_period,
            bb_period=ind.bollinger.params.period,
            bb_std_dev=ind.bollinger.params.std_dev,
            keltner_period=ind.bollinger.params.keltner_period,
            keltner_multiplier=ind.bollinger.params.keltner_multiplier,
            obv_slope_window=ind.obv.params.slope_window,
            obv_slope_history=ind.obv.params.slope_history,
            obv_min_slope_samples=ind.obv.params.min_slope_samples,
            obv_z_cap=ind.obv.params.z_score_cap,
            atr_period=ind.atr.params.period,
            adx_period=ind.adx.params.period,
        )
