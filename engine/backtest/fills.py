"""Spec §10.11 fill model for one position: next-bar-open entries, intrabar stop/TP (stop first), gap fills
at the open, adverse slippage and taker fees. Stop/TP updates at a bar close take effect from the next bar."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from engine.config.strategy import StrategyConfig
from engine.models import Candle, Side
from engine.risk.contract import ContractSpec
from engine.risk.formulas import initial_levels, trade_pnl
from engine.risk.stops import StopManager


def dec(x: float) -> Decimal:
    """Candle prices are floats in the files; convert through their shortest repr so 2834.31 stays 2834.31."""
    return Decimal(repr(x))


@dataclass(frozen=True, slots=True)
class StopMove:
    ts: int
    price: Decimal
    reason: str


@dataclass
class OpenPosition:
    symbol: str
    side: Side
    entry_ts: int
    entry_price: Decimal
    lots: int
    spec: ContractSpec
    leverage: int
    stops: StopManager
    initial_stop: Decimal
    initial_take_profit: Decimal
    liquidation: Decimal
    entry_fee: Decimal = Decimal(0)  # taken by the exchange at the fill
    stop_moves: list[StopMove] = field(default_factory=list)

    @property
    def quantity(self) -> Decimal:
        return self.spec.base_quantity(self.lots)

    @property
    def margin(self) -> Decimal:
        return self.quantity * self.entry_price / self.leverage

    def unrealized(self, price: Decimal) -> Decimal:
        """What the open position adds to the account's equity at ``price``: its price move less the entry fee
        already paid (the exit fee is paid at the exit)."""
        return self.side.sign * self.quantity * (price - self.entry_price) - self.entry_fee


@dataclass(frozen=True, slots=True)
class ClosedTrade:
    symbol: str
    side: Side
    entry_ts: int
    exit_ts: int
    entry_price: Decimal
    exit_price: Decimal
    lots: int
    multiplier: Decimal
    leverage: int
    fees: Decimal
    gross_pnl: Decimal
    net_pnl: Decimal
    exit_reason: str
    initial_stop: Decimal
    initial_take_profit: Decimal
    stop_moves: tuple[StopMove, ...]


def open_position(
    cfg: StrategyConfig, *, symbol: str, side: Side, bar: Candle, lots: int, leverage: int, spec: ContractSpec
) -> OpenPosition:
    """Fill at the bar's open with adverse slippage; SL/TP from the fill price."""
    slip = cfg.backtest.slippage_fraction
    fill = dec(bar.open) * (1 + side.sign * slip)
    levels = initial_levels(cfg, side, fill, leverage, spec.tick_size)
    stops = StopManager(
        cfg,
        side=side,
        entry=fill,
        leverage=leverage,
        tick=spec.tick_size,
        stop=levels.stop,
        take_profit=levels.take_profit,
    )
    return OpenPosition(
        symbol=symbol,
        side=side,
        entry_ts=bar.ts,
        entry_price=fill,
        lots=lots,
        spec=spec,
        leverage=leverage,
        stops=stops,
        initial_stop=levels.stop,
        initial_take_profit=levels.take_profit,
        liquidation=levels.liquidation,
        entry_fee=cfg.fees.entry_fee_rate * spec.base_quantity(lots) * fill,
    )


def check_exit(cfg: StrategyConfig, pos: OpenPosition, bar: Candle, *, entry_bar: bool) -> ClosedTrade | None:
    """Did ``bar`` hit the stop or TP in force at its open? Stop first when both; gap fills at the open."""
    side, stop, tp = pos.side, pos.stops.stop, pos.stops.take_profit
    o, h, lo = dec(bar.open), dec(bar.high), dec(bar.low)
    long = side is Side.LONG
    stop_hit = lo <= stop if long else h >= stop
    tp_hit = h >= tp if long else lo <= tp
    if stop_hit:
        gapped = not entry_bar and (o <= stop if long else o >= stop)
        trigger, reason = (o if gapped else stop), pos.stops.exit_reason
    elif tp_hit:
        gapped = not entry_bar and (o >= tp if long else o <= tp)
        trigger, reason = (o if gapped else tp), "take_profit"
    else:
        return None
    if (long and trigger <= pos.liquidation) or (not long and trigger >= pos.liquidation):
        trigger, reason = pos.liquidation, "liquidation"
    fill = trigger * (1 - side.sign * cfg.backtest.slippage_fraction)
    return close_trade(cfg, pos, fill, bar.ts, reason)


def close_trade(cfg: StrategyConfig, pos: OpenPosition, fill: Decimal, ts: int, reason: str) -> ClosedTrade:
    pnl = trade_pnl(
        pos.side,
        entry=pos.entry_price,
        exit_price=fill,
        quantity=pos.quantity,
        leverage=pos.leverage,
        fee_in=cfg.fees.entry_fee_rate,
        fee_out=cfg.fees.exit_fee_rate,
    )
    return ClosedTrade(
        symbol=pos.symbol,
        side=pos.side,
        entry_ts=pos.entry_ts,
        exit_ts=ts,
        entry_price=pos.entry_price,
        exit_price=fill,
        lots=pos.lots,
        multiplier=pos.spec.multiplier,
        leverage=pos.leverage,
        fees=pnl.fees,
        gross_pnl=pnl.gross,
        net_pnl=pnl.net,
        exit_reason=reason,
        initial_stop=pos.initial_stop,
        initial_take_profit=pos.initial_take_profit,
        stop_moves=tuple(pos.stop_moves),
    )


def update_stops(pos: OpenPosition, bar: Candle, close_ts: int) -> None:
    """At the bar close: move stop/TP per §10.8; effective from the next bar."""
    update = pos.stops.update(dec(bar.close))
    if update is not None:
        pos.stop_moves.append(StopMove(close_ts, update.new_stop, update.reason.value))
