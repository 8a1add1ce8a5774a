"""Typed, validated models of ``docs/STRATEGY_CONFIG.json``.

The JSON is authoritative for every number in the strategy, so the models reject unknown keys, wrong types and
out-of-range values, and the cross-field rules of the spec (break-even trigger above the fee-aware break-even ROI,
ordered leverage tiers, ...) are checked once at load time instead of being trusted at trade time.
"""

from __future__ import annotations

import functools
import json
from decimal import Decimal
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Self, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_STRATEGY_CONFIG_PATH = ROOT / "docs" / "STRATEGY_CONFIG.json"

Category = Literal["divergence", "goldenDeathCross", "squeeze", "crossover", "momentum", "zone", "other"]
# The strengths strengthMultipliers prices (engine/scoring/codes.py STRENGTHS).
Strength = Literal["veryStrong", "strong", "moderate", "weak", "extreme", "unknown"]


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True, validate_default=True
    )


# --------------------------------------------------------------------------- indicators


class RsiParams(_Model):
    period: int = Field(gt=1)
    oversold: float = Field(ge=0, le=100)
    overbought: float = Field(ge=0, le=100)


class StochRsiParams(_Model):
    rsi_period: int = Field(gt=1)
    stoch_period: int = Field(gt=1)
    k_smooth: int = Field(gt=0)
    d_smooth: int = Field(gt=0)
    oversold: float = Field(ge=0, le=100)
    overbought: float = Field(ge=0, le=100)
    extreme_low: float = Field(ge=0, le=100)
    extreme_high: float = Field(ge=0, le=100)


class StochasticParams(_Model):
    k_period: int = Field(gt=1)
    k_smooth: int = Field(gt=0)
    d_period: int = Field(gt=0)
    oversold: float = Field(ge=0, le=100)
    overbought: float = Field(ge=0, le=100)
    extreme_low: float = Field(ge=0, le=100)
    extreme_high: float = Field(ge=0, le=100)
    cross_zone_margin: float = Field(ge=0, le=50)


class WilliamsRParams(_Model):
    period: int = Field(gt=1)
    oversold: float = Field(ge=-100, le=0)
    overbought: float = Field(ge=-100, le=0)
    extreme_low: float = Field(ge=-100, le=0)
    extreme_high: float = Field(ge=-100, le=0)
    persistent_bars: int = Field(gt=0)
    cross_very_strong_min_bars_in_zone: int = Field(gt=0)


class KdjParams(_Model):
    period: int = Field(gt=1)
    k_smooth: int = Field(gt=0)
    d_smooth: int = Field(gt=0)
    j_oversold: float
    j_overbought: float
    kd_initial: float = Field(ge=0, le=100)
    persistent_bars: int = Field(gt=0)


class AoParams(_Model):
    fast_period: int = Field(gt=0)
    slow_period: int = Field(gt=1)
    ac_period: int = Field(gt=0)
    twin_peaks_window: int = Field(gt=2)


class EmaTrendParams(_Model):
    short_period: int = Field(gt=0)
    long_period: int = Field(gt=0)
    mid_trend_period: int = Field(gt=0)
    trend_period: int = Field(gt=0)
    extreme_distance50_pct: float = Field(gt=0)
    extreme_distance100_pct: float = Field(gt=0)
    extreme_distance200_pct: float = Field(gt=0)
    strong_trend_distance_pct: float = Field(gt=0)


class MacdParams(_Model):
    fast_period: int = Field(gt=0)
    slow_period: int = Field(gt=1)
    signal_period: int = Field(gt=0)


class BollingerParams(_Model):
    period: int = Field(gt=1)
    std_dev: float = Field(gt=0)
    keltner_period: int = Field(gt=0)
    keltner_multiplier: float = Field(gt=0)
    touch_tolerance: float = Field(ge=0, lt=1)
    walk_lookback: int = Field(gt=0)
    walk_min_closes: int = Field(gt=0)


class ObvParams(_Model):
    slope_window: int = Field(gt=1)
    z_score_cap: float = Field(gt=0)
    z_score_trigger: float = Field(gt=0)
    z_score_strong: float = Field(gt=0)
    slope_history: int = Field(gt=1)
    min_slope_samples: int = Field(gt=1)
    price_confirm_bars: int = Field(gt=0)
    breakout_window: int = Field(gt=1)
    volume_spike_lookback: int = Field(gt=0)
    volume_spike_factor: float = Field(gt=0)


class AdxParams(_Model):
    period: int = Field(gt=1)
    trend_threshold: float = Field(ge=0, le=100)
    strong_trend_threshold: float = Field(ge=0, le=100)


class AtrParams(_Model):
    period: int = Field(gt=0)


class _IndicatorBase(_Model):
    enabled: bool
    directional: bool
    weight: float = Field(ge=0, le=150)
    signals: dict[str, Category]


class RsiConfig(_IndicatorBase):
    standalone_entry_allowed: bool = False
    params: RsiParams


class StochRsiConfig(_IndicatorBase):
    params: StochRsiParams


class StochasticConfig(_IndicatorBase):
    params: StochasticParams


class WilliamsRConfig(_IndicatorBase):
    params: WilliamsRParams


class KdjConfig(_IndicatorBase):
    params: KdjParams


class AoConfig(_IndicatorBase):
    params: AoParams


class EmaTrendConfig(_IndicatorBase):
    params: EmaTrendParams


class MacdConfig(_IndicatorBase):
    params: MacdParams


class BollingerConfig(_IndicatorBase):
    params: BollingerParams


class ObvConfig(_IndicatorBase):
    params: ObvParams


class AdxConfig(_IndicatorBase):
    params: AdxParams


class AtrConfig(_IndicatorBase):
    params: AtrParams


class IndicatorsConfig(_Model):
    rsi: RsiConfig
    stoch_rsi: StochRsiConfig
    stochastic: StochasticConfig
    williams_r: WilliamsRConfig
    kdj: KdjConfig
    ao: AoConfig
    ema_trend: EmaTrendConfig
    macd: MacdConfig
    bollinger: BollingerConfig
    obv: ObvConfig
    adx: AdxConfig
    atr: AtrConfig

    def names(self) -> tuple[str, ...]:
        """Indicator names in config order (snake_case attribute names)."""
        return tuple(type(self).model_fields)

    def get(self, name: str) -> _IndicatorBase:
        """The config of indicator ``name`` (snake_case or the JSON's camelCase)."""
        value = getattr(self, indicator_key(name), None)
        if not isinstance(value, _IndicatorBase):
            raise KeyError(f"unknown indicator {name!r}")
        return value


# --------------------------------------------------------------------------- multipliers


class SignalTypeMultipliers(_Model):
    divergence: float = Field(ge=0)
    golden_death_cross: float = Field(ge=0)
    squeeze: float = Field(ge=0)
    crossover: float = Field(ge=0)
    momentum: float = Field(ge=0)
    zone: float = Field(ge=0)
    other: float = Field(ge=0)

    def get(self, category: str) -> float:
        """Multiplier for ``category`` as named in the JSON (e.g. ``goldenDeathCross``)."""
        return _lookup(self, category)


class StrengthMultipliers(_Model):
    very_strong: float = Field(ge=0)
    strong: float = Field(ge=0)
    moderate: float = Field(ge=0)
    weak: float = Field(ge=0)
    extreme: float = Field(ge=0)
    unknown: float = Field(ge=0)

    def get(self, strength: str) -> float:
        """Multiplier for ``strength`` as named in the JSON (e.g. ``veryStrong``)."""
        return _lookup(self, strength)


class DivergenceDetection(_Model):
    window_bars: int = Field(gt=4)
    min_history_bars: int = Field(gt=0)
    swing_neighbors: int = Field(gt=0)
    price_series: Literal["close"]
    strength: Strength  # checked here: the bot would otherwise refuse it only when its engine is built, in a traceback


class Classification(_Model):
    extreme_buy_min: float
    strong_buy_min: float
    buy_min: float
    buy_weak_min: float
    sell_weak_max: float
    sell_max: float
    strong_sell_max: float
    extreme_sell_max: float

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        bands = [
            self.extreme_sell_max,
            self.strong_sell_max,
            self.sell_max,
            self.sell_weak_max,
            self.buy_weak_min,
            self.buy_min,
            self.strong_buy_min,
            self.extreme_buy_min,
        ]
        if bands != sorted(bands) or len(set(bands)) != len(bands):
            raise ValueError("classification bands must be strictly increasing from extremeSellMax to extremeBuyMin")
        return self


class ScoringConfig(_Model):
    signal_base_points_fraction: float = Field(gt=0, le=1)
    microstructure_base_points_fraction: float = Field(gt=0, le=1)
    per_indicator_cap: str
    indicator_score_cap: float = Field(gt=0)
    microstructure_score_cap: float = Field(ge=0)
    total_score_cap: float = Field(gt=0)
    classification: Classification
    direction_neutral_band: float = Field(ge=0)


class RegimeConfig(_Model):
    adx_trend_threshold: float = Field(ge=0, le=100)
    adx_strong_trend_threshold: float = Field(ge=0, le=100)
    rsi_source_for_combos: str


class CombinationBonuses(_Model):
    enabled: bool
    signed: bool
    ema_cross_with_rsi: float = Field(ge=0)
    ema_cross_rsi_buy_above: float = Field(ge=0, le=100)
    ema_cross_rsi_sell_below: float = Field(ge=0, le=100)
    divergence_with_trend: float = Field(ge=0)
    pullback_entry: float = Field(ge=0)
    pullback_buy_rsi_below: float = Field(ge=0, le=100)
    pullback_sell_rsi_above: float = Field(ge=0, le=100)
    strong_adx_trend: float = Field(ge=0)


class ConfluenceConfig(_Model):
    min_count: int = Field(ge=0)
    min_percentage: float = Field(ge=0, le=1)
    counted_timeframe: Literal["primary"]
    denominator: str


class MtfConfidence(_Model):
    primary_weight: float = Field(ge=0, le=1)
    secondary_weight: float = Field(ge=0, le=1)
    full_alignment_bonus: float
    partial_alignment_bonus: float
    divergent_alignment_penalty: float
    divergence_signal_bonus: float
    avg_agreeing5_bonus: float
    avg_agreeing4_bonus: float


class ConfidencePenalties(_Model):
    enabled: bool
    chop_penalty: float = Field(ge=0)
    chop_atr_pct_below: float = Field(ge=0)
    chop_net_move_below: float = Field(ge=0)
    chop_net_move_bars: int = Field(gt=0)
    vol_penalty_medium: float = Field(ge=0)
    vol_medium_atr_pct: float = Field(ge=0)
    vol_penalty_high: float = Field(ge=0)
    vol_high_atr_pct: float = Field(ge=0)
    conflict_penalty_per_signal: float = Field(ge=0)


class ConfidenceConfig(_Model):
    agreement_weight: float = Field(ge=0)
    agreement_bonus_per_indicator: float = Field(ge=0)
    agreement_bonus_max: float = Field(ge=0)
    divergence_bonus_per_signal: float = Field(ge=0)
    mtf: MtfConfidence
    penalties: ConfidencePenalties


class GatesConfig(_Model):
    enabled: bool
    min_score: float = Field(ge=0, le=150)
    dead_zone_min: float = Field(ge=0, le=150)
    threshold_cross_required: bool
    min_confidence: float = Field(ge=0, le=1)
    min_indicators_agreeing: int = Field(ge=0, le=20)
    confluence_percent_min: float = Field(ge=0, le=1)
    require_trend_alignment: bool
    neutral_trend_blocks: bool
    max_drawdown_pct: float = Field(ge=0, le=100)
    drawdown_peak_reset_daily: bool
    volatility_threshold_boost: bool
    require_mtf_alignment: bool
    require_trigger_signal: bool
    trigger_categories: str
    require_divergence: bool
    rsi_alone_guard: bool
    require_ao_when_enabled: bool
    live_avoid_entry_filter: bool

    @property
    def trigger_category_set(self) -> frozenset[str]:
        return frozenset(c.strip() for c in self.trigger_categories.split(",") if c.strip())


class StrictModeConfig(_Model):
    enabled: bool
    dead_zone_min: float = Field(ge=0, le=150)
    min_score: float = Field(ge=0, le=150)
    threshold_cross_required: bool
    min_confidence: float = Field(ge=0, le=1)
    min_indicators_agreeing: int = Field(ge=0, le=20)
    confluence_percent_min: float = Field(ge=0, le=1)


class GateThresholds(_Model):
    """The gate numbers in force: STRICT's when strict mode is on, else the canonical ones."""

    strict: bool
    dead_zone_min: float
    min_score: float
    threshold_cross_required: bool
    min_confidence: float
    min_indicators_agreeing: int
    confluence_percent_min: float


# --------------------------------------------------------------------------- volatility, timeframes, micro


class LeverageTier(_Model):
    atr_pct_below: Decimal = Field(gt=0)
    leverage: int = Field(gt=0)


class VolatilityConfig(_Model):
    atr_period: int = Field(gt=0)
    atr_timeframe: Literal["primary"]
    regime_low_below_atr_pct: Decimal = Field(ge=0)
    regime_medium_below_atr_pct: Decimal = Field(ge=0)
    threshold_boost_medium_atr_pct: Decimal = Field(ge=0)
    threshold_boost_medium: Decimal = Field(ge=0)
    threshold_boost_high_atr_pct: Decimal = Field(ge=0)
    threshold_boost_high: Decimal = Field(ge=0)
    leverage_tiers: list[LeverageTier] = Field(min_length=1)
    leverage_tiers_last_row_is_catch_all: bool
    size_multiplier_above_atr_pct1: Decimal = Field(ge=0)
    size_multiplier1: Decimal = Field(gt=0)
    size_multiplier_above_atr_pct2: Decimal = Field(ge=0)
    size_multiplier2: Decimal = Field(gt=0)

    @model_validator(mode="after")
    def _tiers_ascending(self) -> Self:
        bounds = [t.atr_pct_below for t in self.leverage_tiers]
        if bounds != sorted(bounds) or len(set(bounds)) != len(bounds):
            raise ValueError("leverageTiers: atrPctBelow must be strictly increasing")
        levs = [t.leverage for t in self.leverage_tiers]
        if levs != sorted(levs, reverse=True):
            raise ValueError("leverageTiers: leverage must not increase with ATR%")
        if self.threshold_boost_high_atr_pct < self.threshold_boost_medium_atr_pct:
            raise ValueError("thresholdBoostHighAtrPct must be >= thresholdBoostMediumAtrPct")
        return self


class TimeframesConfig(_Model):
    primary: str
    confirmation: str
    mtf_enabled: bool
    primary_weight: float = Field(ge=0, le=1)
    confirmation_weight: float = Field(ge=0, le=1)
    partial_primary_weight: float = Field(ge=0, le=1)
    partial_confirmation_weight: float = Field(ge=0, le=1)
    allow_partial_alignment: bool
    min_primary_abs_score: float = Field(ge=0)
    max_timeframe_divergence: float = Field(ge=0)
    full_alignment_score_bonus: float = Field(ge=0)
    low_divergence_bonus_below10: float = Field(ge=0)
    low_divergence_bonus_below15: float = Field(ge=0)
    divergence_signal_score_bonus: float = Field(ge=0)
    min_candles: int = Field(gt=0)
    primary_required_indicators: str
    confirmation_required_indicators: str

    @model_validator(mode="after")
    def _known_timeframes(self) -> Self:
        from engine.models import TIMEFRAME_MS

        for name in (self.primary, self.confirmation):
            if name not in TIMEFRAME_MS:
                raise ValueError(f"unknown timeframe {name!r}")
        if TIMEFRAME_MS[self.confirmation] % TIMEFRAME_MS[self.primary]:
            raise ValueError("confirmation timeframe must be a multiple of the primary timeframe")
        return self


class MicroAnalyzer(_Model):
    enabled: bool
    weight: float = Field(ge=0)
    depth_levels: str | None = None
    imbalance_long: float | None = None
    imbalance_short: float | None = None

    @model_validator(mode="after")
    def _depths_readable(self) -> Self:
        """The DOM's depths are read from one level-2 request (KuCoin serves at most the top 100 levels)."""
        if self.depth_levels is None:
            return self
        parts = [p.strip() for p in self.depth_levels.split(",")]
        if not parts or not all(p.isdigit() and 1 <= int(p) <= 100 for p in parts):
            raise ValueError(f"depthLevels {self.depth_levels!r} must be comma-separated level counts from 1 to 100")
        return self


class MicroAnalyzers(_Model):
    buy_sell_ratio: MicroAnalyzer
    price_ratio: MicroAnalyzer
    funding_rate: MicroAnalyzer
    dom: MicroAnalyzer


class AvoidEntryConfig(_Model):
    max_spread_pct: float = Field(ge=0)
    max_abs_funding_rate_pct: float = Field(ge=0)
    buy_sell_ratio_low: float = Field(ge=0, le=1)
    buy_sell_ratio_high: float = Field(ge=0, le=1)


class MicrostructureConfig(_Model):
    live_only: bool
    never_in_backtest: bool
    apply_to_live_score: bool
    shadow_logging: bool
    analyzers: MicroAnalyzers
    avoid_entry: AvoidEntryConfig


# --------------------------------------------------------------------------- risk, fees, backtest


class ProfitLockLevel(_Model):
    trigger_roi: Decimal = Field(gt=0)
    lock_roi: Decimal

    @model_validator(mode="after")
    def _lock_below_trigger(self) -> Self:
        if self.lock_roi >= self.trigger_roi:
            raise ValueError("profitLockLevels: lockRoi must be below its triggerRoi")
        return self


class RiskManagementConfig(_Model):
    margin_mode: Literal["isolated", "cross"]
    position_size_percent: Decimal = Field(gt=0, le=100)
    max_position_percent: Decimal = Field(gt=0, le=100)
    max_margin_per_trade_usd: Decimal = Field(gt=0)
    max_total_margin_percent: Decimal = Field(gt=0, le=100)
    strong_score: Decimal = Field(gt=0)
    strong_score_size_multiplier: Decimal = Field(gt=0)
    extreme_score: Decimal = Field(gt=0)
    extreme_score_size_multiplier: Decimal = Field(gt=0)
    leverage_default: int = Field(gt=0)
    leverage_min: int = Field(gt=0)
    leverage_max: int = Field(gt=0, le=200)
    leverage_integer_only: bool
    stop_loss_roi: Decimal = Field(gt=0)
    take_profit_roi: Decimal = Field(gt=0)
    break_even_enabled: bool
    break_even_activation_roi: Decimal = Field(gt=0)
    break_even_buffer_roi: Decimal = Field(ge=0)
    break_even_fee_aware: bool
    profit_lock_enabled: bool
    profit_lock_levels: list[ProfitLockLevel]
    trailing_enabled: bool
    trailing_mode: Literal["staircase"]
    trailing_activation_roi: Decimal = Field(gt=0)
    trailing_step_roi: Decimal = Field(gt=0)
    trailing_distance_roi: Decimal = Field(gt=0)
    extend_take_profit_when_trailing: bool
    never_untrail: Literal[True]
    time_based_exits: Literal[False]
    signal_reversal_exits: Literal[False]
    partial_take_profit_enabled: bool
    partial_take_profit_roi: Decimal = Field(gt=0)
    partial_take_profit_fraction: Decimal = Field(gt=0, lt=1)
    reduce_only_exits: Literal[True]
    stop_price_type: Literal["mark", "last", "index"]
    stop_update_min_interval_ms: int = Field(ge=0)
    stop_min_move_ticks: int = Field(ge=0)
    max_open_positions: int = Field(gt=0)
    one_position_per_symbol: Literal[True]
    entry_cooldown_ms: int = Field(ge=0)
    loss_cooldown_ms: int = Field(ge=0)
    daily_loss_limit_pct: Decimal = Field(gt=0, le=100)
    max_consecutive_losses: int = Field(gt=0)
    consecutive_loss_halt_resets_daily: bool
    circuit_breaker_drawdown_pct: Decimal = Field(gt=0, le=100)
    maintenance_margin_rate: Decimal = Field(ge=0, lt=1)
    min_liquidation_buffer: Decimal = Field(ge=0, lt=1)
    liquidation_formula: Literal["isolatedLinearApprox"]

    @model_validator(mode="after")
    def _leverage_bounds(self) -> Self:
        if not self.leverage_min <= self.leverage_default <= self.leverage_max:
            raise ValueError("leverageDefault must lie within [leverageMin, leverageMax]")
        return self

    @model_validator(mode="after")
    def _trailing_beyond_distance(self) -> Self:
        if self.trailing_activation_roi <= self.trailing_distance_roi:
            raise ValueError("trailingActivationRoi must exceed trailingDistanceRoi (the stop would sit above price)")
        return self

    @model_validator(mode="after")
    def _stop_inside_liquidation(self) -> Self:
        # 10/(100 L) < 1/L - mmr must hold at the smallest leverage: the stop lies before liquidation.
        lev = Decimal(self.leverage_max)
        if self.stop_loss_roi / (100 * lev) >= 1 / lev - self.maintenance_margin_rate:
            raise ValueError("stopLossRoi is beyond the liquidation price at leverageMax")
        return self


class FeesConfig(_Model):
    model: Literal["takerTaker"]
    taker_fee: Decimal = Field(ge=0, lt=Decimal("0.01"))
    maker_fee: Decimal = Field(gt=Decimal("-0.01"), lt=Decimal("0.01"))
    entry_fee_rate: Decimal = Field(ge=0, lt=Decimal("0.01"))
    exit_fee_rate: Decimal = Field(ge=0, lt=Decimal("0.01"))
    funding_in_backtest: bool


class BacktestConfig(_Model):
    fees_included: bool
    slippage_fraction: Decimal = Field(ge=0, lt=Decimal("0.05"))
    entry_fill: str
    exit_trigger: str
    same_bar_stop_and_tp: Literal["stop first"]
    gap_fill: str
    stop_updates_from: str
    microstructure: Literal[False]
    no_lookahead: Literal[True]


class VersionInfo(_Model):
    name: str
    version: str
    spec_date: str
    config_schema_version: Literal[1]
    reconstructed: bool
    companion_spec: str


# --------------------------------------------------------------------------- root


class StrategyConfig(_Model):
    """The whole strategy: every number the scoring, gates and risk code reads."""

    version: VersionInfo
    conventions: dict[str, str]
    indicators: IndicatorsConfig
    signal_type_multipliers: SignalTypeMultipliers
    strength_multipliers: StrengthMultipliers
    divergence_detection: DivergenceDetection
    scoring: ScoringConfig
    regime: RegimeConfig
    combination_bonuses: CombinationBonuses
    confluence: ConfluenceConfig
    confidence: ConfidenceConfig
    gates: GatesConfig
    strict_mode: StrictModeConfig
    volatility: VolatilityConfig
    timeframes: TimeframesConfig
    microstructure: MicrostructureConfig
    risk_management: RiskManagementConfig
    fees: FeesConfig
    backtest: BacktestConfig
    provenance: dict[str, Any] = Field(default_factory=dict, alias="_provenance")

    @model_validator(mode="after")
    def _break_even_trigger_above_fees(self) -> Self:
        """Spec §10.5: the BE trigger must exceed the BE stop's gross ROI at the largest selectable leverage."""
        rm = self.risk_management
        if not rm.break_even_enabled:
            return self
        lev = Decimal(rm.leverage_max)
        needed = (self.fees.entry_fee_rate + self.fees.exit_fee_rate) * lev * 100 + rm.break_even_buffer_roi
        if rm.break_even_activation_roi <= needed:
            raise ValueError(
                f"riskManagement.breakEvenActivationRoi {rm.break_even_activation_roi} must exceed "
                f"(entryFee + exitFee)·leverageMax·100 + breakEvenBufferRoi = {needed}"
            )
        return self

    @model_validator(mode="after")
    def _required_indicators_enabled(self) -> Self:
        for field in ("primary_required_indicators", "confirmation_required_indicators"):
            for name in _split(getattr(self.timeframes, field)):
                self.indicators.get(name)  # unknown names raise
        return self

    def effective_gates(self) -> GateThresholds:
        """Gate numbers in force: STRICT's when ``strictMode.enabled``, the canonical ``gates`` otherwise."""
        src: GatesConfig | StrictModeConfig = self.strict_mode if self.strict_mode.enabled else self.gates
        return GateThresholds(
            strict=self.strict_mode.enabled,
            dead_zone_min=src.dead_zone_min,
            min_score=src.min_score,
            threshold_cross_required=src.threshold_cross_required,
            min_confidence=src.min_confidence,
            min_indicators_agreeing=src.min_indicators_agreeing,
            confluence_percent_min=src.confluence_percent_min,
        )

    def with_strict(self, enabled: bool) -> StrategyConfig:
        """A copy with strict mode switched on or off."""
        return self.model_copy(update={"strict_mode": self.strict_mode.model_copy(update={"enabled": enabled})})

    def with_strict_overrides(
        self, *, min_score: float | None = None, min_confidence: float | None = None
    ) -> StrategyConfig:
        """A copy with the STRICT entry score / confidence replaced (environment overrides), re-validated."""
        data = self.model_dump(by_alias=True, mode="json")
        if min_score is not None:
            data["strictMode"]["minScore"] = min_score
        if min_confidence is not None:
            data["strictMode"]["minConfidence"] = min_confidence
        return StrategyConfig.model_validate(data)


def _split(names: str) -> list[str]:
    return [n.strip() for n in names.split(",") if n.strip()]


def _to_snake(name: str) -> str:
    out: list[str] = []
    for ch in name:
        if ch.isupper():
            out.append("_")
            out.append(ch.lower())
        else:
            out.append(ch)
    return "".join(out)


def indicator_key(name: str) -> str:
    """The snake_case name of indicator ``name`` as the config accepts it (``emaTrend`` or ``ema_trend``): the
    names the detectors and readiness go by."""
    return name if name in IndicatorsConfig.model_fields else _to_snake(name)


def _lookup(model: BaseModel, name: str) -> float:
    attr = name if name in type(model).model_fields else _to_snake(name)
    value = getattr(model, attr, None)
    if not isinstance(value, float):
        raise KeyError(f"unknown name {name!r} in {type(model).__name__}")
    return value


def load_strategy_config(path: Path | None = None) -> StrategyConfig:
    """Read and validate the strategy JSON; raises ``ConfigError`` with one clear line on any problem."""
    from engine.config.errors import ConfigError

    target = path or DEFAULT_STRATEGY_CONFIG_PATH
    try:
        text = target.read_text()
    except FileNotFoundError:
        raise ConfigError(f"strategy config not found: {target}") from None
    except OSError as exc:
        raise ConfigError(f"strategy config unreadable: {target}: {exc.strerror}") from None
    try:
        raw = json.loads(text, parse_float=Decimal, parse_constant=_no_constant, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"strategy config {target} is not valid JSON: line {exc.lineno}: {exc.msg}") from None
    except ValueError as exc:
        raise ConfigError(f"strategy config {target}: {exc}") from None
    return validate_strategy_config(raw, source=str(target))


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows; write a finite number")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"key {key!r} is given twice in one object (only one of them would count)")
        out[key] = value
    return out


_NUMBERS = (int, float, Decimal)


def _type_errors(annotation: Any, value: Any, path: str) -> list[str]:
    """Where pydantic's lax mode would coerce a value the JSON spells wrongly: a number written as a string or as
    true/false, or a flag written as a number or a string. Everything else is left to the models."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return _type_errors(args[0], value, path)
    if origin in (Union, UnionType):
        options = [a for a in args if a is not type(None)]
        return [] if value is None or len(options) != 1 else _type_errors(options[0], value, path)
    if annotation is bool:
        return [] if isinstance(value, bool) else [f"{path}: must be true or false (got {value!r})"]
    if annotation in _NUMBERS:
        if isinstance(value, bool) or not isinstance(value, _NUMBERS):
            return [
                f"{path}: must be a number, not {'true/false' if isinstance(value, bool) else type(value).__name__}"
                f" (got {json.dumps(value, default=str)})"
            ]
        return []
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return _model_type_errors(annotation, value, path)
    if origin is dict and len(args) == 2 and isinstance(value, dict):
        return [e for k, v in value.items() for e in _type_errors(args[1], v, f"{path}.{k}")]
    if origin in (list, tuple) and args and isinstance(value, list):
        inner = args[0]
        return [e for i, v in enumerate(value) for e in _type_errors(inner, v, f"{path}.{i}")]
    return []


def _model_type_errors(model: type[BaseModel], raw: Any, path: str) -> list[str]:
    if not isinstance(raw, dict):
        return []
    errors: list[str] = []
    for name, field in model.model_fields.items():
        key = field.alias if field.alias is not None and field.alias in raw else name
        if key in raw:
            errors += _type_errors(field.annotation, raw[key], f"{path}.{key}" if path else key)
    return errors


def validate_strategy_config(raw: Any, *, source: str = "strategy config") -> StrategyConfig:
    """Validate already-parsed JSON data."""
    from pydantic import ValidationError

    from engine.config.errors import ConfigError, describe_validation_error

    wrong = _model_type_errors(StrategyConfig, raw, "")
    if wrong:
        raise ConfigError(f"{source}: {'; '.join(wrong)}")
    try:
        return StrategyConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {describe_validation_error(exc)}") from None


def unsupported_by_runtime(cfg: StrategyConfig) -> str | None:
    """Why the trading runtime refuses ``cfg``, or None: a switch it does not implement, on. Trading as if it were
    off would run another strategy than the one configured (the backtest refuses what it cannot model too)."""
    on = [
        name
        for name, enabled in (
            ("riskManagement.partialTakeProfitEnabled", cfg.risk_management.partial_take_profit_enabled),
            ("microstructure.applyToLiveScore", cfg.microstructure.apply_to_live_score),
            # The runtime switches every traded symbol to isolated margin at start (the §10.10 liquidation math is
            # the isolated one); a config asking for cross would be overridden without a word.
            ("riskManagement.marginMode cross (isolated only)", cfg.risk_management.margin_mode != "isolated"),
        )
        if enabled
    ]
    if not on:
        return None
    return f"not implemented by the trading runtime: {', '.join(on)}; change them in the strategy config"


@functools.cache
def default_strategy_config() -> StrategyConfig:
    """The validated default config, loaded once."""
    return load_strategy_config()
