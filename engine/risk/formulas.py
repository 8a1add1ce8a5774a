"""Spec §10 in Decimal: leverage, sizing, ROI/PnL, SL/TP, break-even, liquidation, tick rounding. No I/O."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from engine.config.strategy import StrategyConfig
from engine.models import Side
from engine.risk.contract import ContractSpec

HUNDRED = Decimal(100)
ONE = Decimal(1)


class RiskInputError(ValueError):
    """A price, size or leverage that no real trade can have."""


def _positive(name: str, value: Decimal) -> None:
    if not value > 0:
        raise RiskInputError(f"{name} must be positive, got {value}")


# --------------------------------------------------------------------------- rounding


def round_to_tick(price: Decimal, tick: Decimal, *, up: bool) -> Decimal:
    """Round ``price`` to a multiple of ``tick``, up or down."""
    steps = (price / tick).to_integral_value(rounding=ROUND_CEILING if up else ROUND_FLOOR)
    return (steps * tick).quantize(tick)


def round_stop(price: Decimal, side: Side, tick: Decimal) -> Decimal:
    """§10.4: a stop rounds toward the protective side that does not worsen the ROI target (long up, short down)."""
    return round_to_tick(price, tick, up=side is Side.LONG)


def round_take_profit(price: Decimal, side: Side, tick: Decimal) -> Decimal:
    """§10.4: a take-profit rounds toward entry (long down, short up)."""
    return round_to_tick(price, tick, up=side is Side.SHORT)


# --------------------------------------------------------------------------- leverage and size


def select_leverage(
    cfg: StrategyConfig, atr_pct: Decimal | None, *, exchange_max: int | None = None, mmr: Decimal | None = None
) -> int:
    """§10.1: ATR tier, clamp to [min, max], liquidation-buffer cap, exchange cap. ``mmr``: the contract's own
    maintenance margin rate, when known (see ``liquidation_leverage_cap``)."""
    rm = cfg.risk_management
    lev = max(rm.leverage_min, min(rm.leverage_max, tier_leverage(cfg, atr_pct)))
    lev = min(lev, liquidation_leverage_cap(cfg, mmr))
    if exchange_max is not None:
        lev = min(lev, exchange_max)
    return lev


def tier_leverage(cfg: StrategyConfig, atr_pct: Decimal | None) -> int:
    """§10.1 step 1: the first tier whose bound is strictly above ATR%; the default when ATR% is unknown."""
    if atr_pct is None:
        return cfg.risk_management.leverage_default
    for tier in cfg.volatility.leverage_tiers:
        if atr_pct < tier.atr_pct_below:
            return tier.leverage
    return cfg.volatility.leverage_tiers[-1].leverage


def liquidation_leverage_cap(cfg: StrategyConfig, mmr: Decimal | None = None) -> int:
    """Largest integer L with 1/L − mmr ≥ minLiquidationBuffer (18 with the defaults).

    mmr is the config's ``maintenanceMarginRate`` (0.5 %) or the contract's own rate when that is higher: KuCoin asks
    0.7 % of SOLUSDTM and XRPUSDTM, where 18× leaves 1/18 − 0.007 = 4.86 %, under the 5 % that §10.10 requires at
    entry, and every such entry was at once inside the buffer the live monitor alerts on. With the spec's 0.5 %
    (and every contract at or under it) the cap is the spec's."""
    rm = cfg.risk_management
    rate = rm.maintenance_margin_rate if mmr is None else max(rm.maintenance_margin_rate, mmr)
    return int((ONE / (rm.min_liquidation_buffer + rate)).to_integral_value(rounding=ROUND_FLOOR))


def score_multiplier(cfg: StrategyConfig, abs_score: Decimal) -> Decimal:
    rm = cfg.risk_management
    if abs_score >= rm.extreme_score:
        return rm.extreme_score_size_multiplier
    if abs_score >= rm.strong_score:
        return rm.strong_score_size_multiplier
    return ONE


def volatility_multiplier(cfg: StrategyConfig, atr_pct: Decimal | None) -> Decimal:
    vol = cfg.volatility
    if atr_pct is None:
        return ONE
    if atr_pct > vol.size_multiplier_above_atr_pct2:
        return vol.size_multiplier2
    if atr_pct > vol.size_multiplier_above_atr_pct1:
        return vol.size_multiplier1
    return ONE


@dataclass(frozen=True, slots=True)
class PositionSize:
    """How many lots to trade, and the margin the spec aimed at."""

    lots: int
    margin_pct: Decimal
    target_margin: Decimal


def position_size(
    cfg: StrategyConfig,
    *,
    equity: Decimal,
    abs_score: Decimal,
    atr_pct: Decimal | None,
    leverage: int,
    ref_price: Decimal,
    spec: ContractSpec,
) -> PositionSize:
    """§10.2: margin = min(2 % × scoreMult × volMult, 3 %) of equity, capped in USDT, converted to whole lots."""
    _positive("equity", equity)
    _positive("reference price", ref_price)
    if leverage < 1:
        raise RiskInputError(f"leverage must be >= 1, got {leverage}")
    rm = cfg.risk_management
    margin_pct = min(
        rm.position_size_percent * score_multiplier(cfg, abs_score) * volatility_multiplier(cfg, atr_pct),
        rm.max_position_percent,
    )
    target = min(equity * margin_pct / HUNDRED, rm.max_margin_per_trade_usd)
    raw_lots = target * leverage / (ref_price * spec.multiplier) / spec.lot_size
    lots = int(raw_lots.to_integral_value(rounding=ROUND_FLOOR)) * spec.lot_size
    return PositionSize(lots=lots, margin_pct=margin_pct, target_margin=target)


# --------------------------------------------------------------------------- ROI and PnL


def gross_roi(side: Side, entry: Decimal, price: Decimal, leverage: int) -> Decimal:
    """§10.3: leveraged ROI on margin, in percent."""
    return side.sign * (price - entry) / entry * leverage * HUNDRED


def price_at_roi(side: Side, entry: Decimal, roi: Decimal, leverage: int) -> Decimal:
    """§10.3: the price at which the gross ROI equals ``roi`` (inverse leverage scaling)."""
    return entry * (ONE + side.sign * roi / (HUNDRED * leverage))


@dataclass(frozen=True, slots=True)
class TradePnl:
    gross: Decimal
    fees: Decimal
    funding: Decimal
    net: Decimal
    margin: Decimal

    @property
    def net_roi(self) -> Decimal:
        return HUNDRED * self.net / self.margin


def trade_pnl(
    side: Side,
    *,
    entry: Decimal,
    exit_price: Decimal,
    quantity: Decimal,
    leverage: int,
    fee_in: Decimal,
    fee_out: Decimal,
    funding: Decimal = Decimal(0),
) -> TradePnl:
    """§10.3: gross, taker fees on both legs, funding, net; ``quantity`` is in base units (lots × multiplier)."""
    _positive("entry", entry)
    _positive("exit price", exit_price)
    _positive("quantity", quantity)
    gross = side.sign * quantity * (exit_price - entry)
    fees = fee_in * quantity * entry + fee_out * quantity * exit_price
    return TradePnl(
        gross=gross, fees=fees, funding=funding, net=gross - fees - funding, margin=quantity * entry / leverage
    )


# --------------------------------------------------------------------------- levels


@dataclass(frozen=True, slots=True)
class InitialLevels:
    stop: Decimal
    take_profit: Decimal
    liquidation: Decimal


def initial_levels(cfg: StrategyConfig, side: Side, entry: Decimal, leverage: int, tick: Decimal) -> InitialLevels:
    """§10.4 and §10.10: the stop at −10 % ROI, the TP at +30 % ROI, both tick-rounded; the liquidation price."""
    _positive("entry", entry)
    rm = cfg.risk_management
    stop = round_stop(price_at_roi(side, entry, -rm.stop_loss_roi, leverage), side, tick)
    tp = round_take_profit(price_at_roi(side, entry, rm.take_profit_roi, leverage), side, tick)
    return InitialLevels(stop=stop, take_profit=tp, liquidation=liquidation_price(cfg, side, entry, leverage))


def break_even_price(cfg: StrategyConfig, side: Side, entry: Decimal, leverage: int) -> Decimal:
    """§10.5: the exit price that nets ``breakEvenBufferRoi`` after taker fees on both legs (unrounded)."""
    f_in, f_out = cfg.fees.entry_fee_rate, cfg.fees.exit_fee_rate
    b = cfg.risk_management.break_even_buffer_roi / (HUNDRED * leverage)
    if side is Side.LONG:
        return entry * (ONE + f_in + b) / (ONE - f_out)
    return entry * (ONE - f_in - b) / (ONE + f_out)


def liquidation_price(cfg: StrategyConfig, side: Side, entry: Decimal, leverage: int) -> Decimal:
    """§10.10: isolated linear approximation, fees ignored."""
    mmr = cfg.risk_management.maintenance_margin_rate
    return entry * (ONE - side.sign * (ONE / leverage - mmr))


def liquidation_buffer(side: Side, mark: Decimal, liquidation: Decimal) -> Decimal:
    """§10.10: distance from mark to liquidation as a fraction of mark (negative once beyond it)."""
    _positive("mark", mark)
    return side.sign * (mark - liquidation) / mark
