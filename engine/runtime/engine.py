"""The trading engine: closed candles → pipeline → gates → pre-trade checks → (approval) → entry → protection;
mark ticks → stop rule → coordinated stop moves; exchange state → accounting, reconciliation and halts."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import structlog

from engine.config.strategy import StrategyConfig
from engine.events import (
    ApprovalRequested,
    ApprovalResolved,
    CandleGap,
    EventBus,
    HaltRaised,
    HealthChanged,
    KillSwitchReport,
    ModeChanged,
    OrderPlaced,
    OrderRejected,
    PositionClosed,
    PositionOpened,
    SignalEvaluated,
    StopMissing,
    TradingStateChanged,
)
from engine.marketdata.aggregate import CandleAggregator
from engine.models import Candle, Side, candle_from_kline, timeframe_ms
from engine.risk.contract import ContractSpec
from engine.risk.formulas import gross_roi, initial_levels, position_size, select_leverage, trade_pnl
from engine.risk.limits import RiskState
from engine.risk.pretrade import EntryProposal, pretrade_checks
from engine.risk.stops import StopManager, StopReason
from engine.runtime.chaos import crash_point
from engine.runtime.protection import Protected, StopCoordinator
from engine.runtime.trading_state import TradingState, check_transition
from engine.scoring.pipeline import Decision, SymbolPipeline
from engine.scoring.timeframe import tables
from exchange.errors import ExchangeError
from exchange.ids import new_client_oid
from exchange.models import OrderRequest, OrderSide
from exchange.rest import KucoinFuturesClient
from storage.repos import Approvals, Intents, Positions, RetryQueue

log = structlog.get_logger(__name__)


@dataclass
class Managed:
    """A live position: its protection on the exchange and the pure stop rule that moves it."""

    protection: Protected
    rule: StopManager


@dataclass
class EngineOptions:
    mode: str = "paper"  # paper | shadow | live
    armed: bool = False
    control: str = "auto"  # auto | manual
    kill_switch_file: Path | None = None
    max_entry_slippage_pct: Decimal = Decimal("0.3")
    margin_mode: str = "ISOLATED"
    symbols: tuple[str, ...] = ("ETHUSDTM",)
    approvals_ttl_ms: int = 300_000
    approval_max_drift_pct: Decimal = Decimal("0.3")
    hedge: bool = False


class TradingEngine:
    def __init__(
        self,
        cfg: StrategyConfig,
        client: KucoinFuturesClient,
        specs: dict[str, ContractSpec],
        bus: EventBus,
        positions: Positions,
        intents: Intents,
        retry: RetryQueue,
        options: EngineOptions,
        *,
        equity: Decimal,
        clock: Callable[[], int] | None = None,
        approvals: Approvals | None = None,
        latency_observer: Callable[[float], None] | None = None,
    ) -> None:
        self.approvals = approvals
        self.latency_observer = latency_observer
        self.cfg = cfg
        self.client = client
        self.specs = specs
        self.bus = bus
        self.positions_repo = positions
        self.intents = intents
        self.retry = retry
        self.options = options
        self.clock = clock or (lambda: int(time.time() * 1000))
        self.state = TradingState.ACTIVE
        self.paused = False
        self.risk = RiskState.start(
            equity, self.clock(), consecutive_loss_resets_daily=cfg.risk_management.consecutive_loss_halt_resets_daily
        )
        self.pipelines = {s: SymbolPipeline(cfg, s, live=options.mode != "paper") for s in options.symbols}
        self.aggregators = {
            s: CandleAggregator(cfg.timeframes.primary, cfg.timeframes.confirmation) for s in options.symbols
        }
        self.managed: dict[str, Managed] = {}
        self.coordinator = StopCoordinator(
            client, positions, intents, retry, bus, clock=self.clock, margin_mode=options.margin_mode
        )
        self.coordinator.hedge = options.hedge
        self.last_decision: dict[str, Decision] = {}
        # Held by whatever changes which positions the engine manages: an entry, a reconciliation, the kill switch.
        # Symbols run concurrently (engine.runtime.lanes); without it a reconciliation triggered by the entry's own
        # position push adopted the fresh position a second time (two stops, two take-profits).
        self._positions_lock = asyncio.Lock()
        self._flattening = False  # the kill switch is closing everything
        self.stream_volume = "unverified"  # -> "trusted" after 3 agreeing checks, or "rest" after one that is not
        self._volume_checks = 0
        self._volume_agreed = 0
        self.explain_from = tables(cfg).gates.min_score  # |score| from which a decision is recorded in full
        self.recent_candles: dict[str, deque[Candle]] = {s: deque(maxlen=288) for s in options.symbols}
        self.pending_entries: dict[str, Decision] = {}

    # ------------------------------------------------------------------ state

    def set_state(self, new: TradingState, reason: str) -> None:
        check_transition(self.state, new)
        if new is not self.state:
            self.bus.publish(
                TradingStateChanged(ts_ms=self.clock(), old=self.state.value, new=new.value, reason=reason)
            )
            self.state = new

    @property
    def trading_live(self) -> bool:
        """Orders really go out: paper (simulator) or live-and-armed. Live unarmed and shadow only validate."""
        return self.options.mode == "paper" or (self.options.mode == "live" and self.options.armed)

    def entries_blocked(self) -> str | None:
        """Why no new entry may be opened right now, or None."""
        if self.state is not TradingState.ACTIVE:
            return f"trading state {self.state}"
        if self.paused:
            return "paused"
        ks = self.options.kill_switch_file
        if ks is not None and ks.exists():
            return f"kill-switch file {ks} exists"
        return None

    # ------------------------------------------------------------------ candles

    async def warm_up(self, symbol: str, candles: list[Candle], confirmation: list[Candle] | None = None) -> int:
        """Feed history through the same pipeline without trading; returns how many primary candles were applied.

        ``confirmation`` is closed confirmation-timeframe history from before ``candles`` begin: 1,000 primary
        candles aggregate to only ~166 confirmation candles, short of the 200 a timeframe needs, so without it a
        fresh start could not trade for most of a day. It is used only on a fresh pipeline, and only candles that
        closed by the first primary candle (which should open a confirmation bucket, or that bucket is lost).
        """
        pipe = self.pipelines[symbol]
        last = pipe.primary.last_ts
        if confirmation and candles and last is None and pipe.confirmation.last_ts is None:
            conf_step = timeframe_ms(self.cfg.timeframes.confirmation)
            for k in confirmation:
                if k.ts + conf_step <= candles[0].ts:
                    pipe.on_confirmation_candle(k)
        applied = 0
        for candle in candles:
            if last is not None and candle.ts <= last:
                continue  # already applied: never twice
            self._apply(symbol, candle)
            last = candle.ts
            applied += 1
        return applied

    def _apply(self, symbol: str, candle: Candle) -> Decision:
        """One closed primary candle through the pipeline (and into the confirmation bucket it completes)."""
        pipe = self.pipelines[symbol]
        self.recent_candles[symbol].append(candle)
        bucket = self.aggregators[symbol].update(candle)
        if bucket is not None:
            pipe.on_confirmation_candle(bucket)
        decision = pipe.on_primary_candle(candle, drawdown_pct=float(self.risk.drawdown_pct))
        self.last_decision[symbol] = decision
        return decision

    async def backfill_and_close(self, symbol: str, candle: Candle) -> Decision:
        """A closed candle from the stream: first fetch over REST any candles the stream missed (a reconnect, a quiet
        market), so the series stays contiguous; a gap REST cannot fill is left to the pipeline (warm-up again)."""
        step = timeframe_ms(self.cfg.timeframes.primary)
        last = self.pipelines[symbol].primary.last_ts
        if last is not None and candle.ts - last > step:
            try:
                rows = await self.client.klines(symbol, step // 60_000, last + step, candle.ts - step)
            except ExchangeError as exc:
                log.warning("candles.backfill_failed", symbol=symbol, error=str(exc))
                rows = []
            missing = [candle_from_kline(r) for r in rows if last < int(r[0]) < candle.ts]
            filled = await self.warm_up(symbol, missing)
            still = (candle.ts - (self.pipelines[symbol].primary.last_ts or last)) // step - 1
            if still > 0:
                self.bus.publish(
                    CandleGap(
                        ts_ms=self.clock(), symbol=symbol, timeframe=self.cfg.timeframes.primary, missing=int(still)
                    )
                )
            log.info("candles.backfilled", symbol=symbol, filled=filled, unfilled=int(max(0, still)))
        return await self.on_closed_candle(symbol, await self._checked_volume(symbol, candle))

    async def _checked_volume(self, symbol: str, candle: Candle) -> Candle:
        """The stream's candle volume is its ``x6`` field, which the API reference marks unsure ("do not rely on
        them; take volume from REST"), while the warm-up history is REST's volume in lots. The first few stream
        candles are compared with REST; if they disagree, OBV would jump at the seam, so from then on every
        closed candle is taken from REST (one request per close) and a health alarm says so."""
        if self.stream_volume == "trusted":
            return candle
        if self.stream_volume == "unverified":
            if self._volume_checks >= 3:
                return candle  # enough checks made or on their way
            self._volume_checks += 1  # taken before the await: other symbols' lanes run meanwhile
        step = timeframe_ms(self.cfg.timeframes.primary)
        try:
            rows = await self.client.klines(symbol, step // 60_000, candle.ts, candle.ts)
        except ExchangeError as exc:
            log.warning("candles.volume_check_failed", symbol=symbol, error=str(exc))
            rows = []
        row = next((r for r in rows if int(r[0]) == candle.ts), None)
        if row is None:  # REST failed or does not have it yet: keep the stream's, check a later one instead
            if self.stream_volume == "unverified":
                self._volume_checks -= 1
            return candle
        rest = candle_from_kline(row)
        if self.stream_volume == "rest":
            return rest
        if abs(rest.volume - candle.volume) > 0.01 * max(rest.volume, 1e-12):
            self.stream_volume = "rest"
            log.error("candles.stream_volume_mismatch", symbol=symbol, stream=candle.volume, rest=rest.volume)
            self.bus.publish(
                HealthChanged(
                    ts_ms=self.clock(),
                    component="market_data",
                    healthy=False,
                    detail=(
                        f"stream candle volume {candle.volume:g} differs from REST {rest.volume:g} on {symbol}: "
                        "closed candles now come from REST (one request per close)"
                    ),
                )
            )
            return rest
        self._volume_agreed += 1
        if self._volume_agreed >= 3 and self.stream_volume == "unverified":
            self.stream_volume = "trusted"
            log.info("candles.stream_volume_verified", checks=self._volume_agreed)
        return candle

    async def on_closed_candle(self, symbol: str, candle: Candle) -> Decision:
        """A closed primary candle: score it and, if everything passes, enter (auto) or ask (manual)."""
        started = time.perf_counter()
        decision = self._apply(symbol, candle)
        # Every bar of every symbol is recorded; the full breakdown (signals, contributions, every gate) only for
        # a decision that passed or came within reach of the entry threshold: across a 500-symbol universe the
        # rest would cost ~600 MB of storage a day and most of the per-candle time.
        explain = decision.passed or abs(decision.final_score) >= self.explain_from
        self.bus.publish(
            SignalEvaluated(
                ts_ms=self.clock(), symbol=symbol, decision=decision.to_dict() if explain else decision.summary()
            )
        )
        if decision.passed and symbol not in self.managed:
            if self.options.control == "manual":
                await self.request_approval(symbol, decision)
            else:
                await self.enter(symbol, decision, started=started)
        return decision

    # ------------------------------------------------------------------ manual approvals

    async def request_approval(self, symbol: str, decision: Decision) -> str | None:
        """Manual mode: park the decision as a persisted card that a person approves or rejects before expiry."""
        if self.approvals is None:
            raise RuntimeError("manual control mode needs the approvals repository")
        spec = self.specs[symbol]
        side = Side.LONG if decision.side == "long" else Side.SHORT
        atr = None if decision.atr_pct is None else Decimal(repr(decision.atr_pct))
        lev = select_leverage(self.cfg, atr, exchange_max=spec.max_leverage)
        price = Decimal(repr(decision.close))
        size = position_size(
            self.cfg,
            equity=self.risk.equity,
            abs_score=Decimal(repr(abs(decision.final_score))),
            atr_pct=atr,
            leverage=lev,
            ref_price=price,
            spec=spec,
        )
        levels = initial_levels(self.cfg, side, price, lev, spec.tick_size)
        qty = spec.base_quantity(size.lots)
        approval_id = new_client_oid("ap")
        now = self.clock()
        expires = now + self.options.approvals_ttl_ms
        self.pending_entries[approval_id] = decision
        card = {
            "side": side.value,
            "price": str(price),
            "score": decision.final_score,
            "atr_pct": decision.atr_pct,
            "confidence": decision.confidence,
            "ts": decision.ts,
        }
        await self.approvals.create(approval_id, symbol, card, now, expires)
        self.bus.publish(
            ApprovalRequested(
                ts_ms=now,
                approval_id=approval_id,
                symbol=symbol,
                side=side.value,
                entry=price,
                stop=levels.stop,
                take_profit=levels.take_profit,
                lots=size.lots,
                leverage=lev,
                margin=qty * price / lev,
                risk=abs(levels.stop - price) * qty,
                expires_ms=expires,
            )
        )
        return approval_id

    async def approve(self, approval_id: str, by: str = "console") -> str:
        """Approve once: re-check price drift and the risk gates, then trade. Returns the outcome."""
        if self.approvals is None or not await self.approvals.transition(
            approval_id, "PENDING", "APPROVED", self.clock()
        ):
            return "expired"  # unknown, already used, rejected or expired: nothing happens
        card = await self.approvals.get(approval_id)
        decision = self.pending_entries.pop(approval_id, None)
        if decision is None and card is not None:
            decision = _decision_from_card(card)  # after a restart the card still carries what to trade
        if card is None or decision is None or card["expires_ms"] < self.clock():
            await self.approvals.transition(approval_id, "APPROVED", "EXPIRED", self.clock())
            self.bus.publish(ApprovalResolved(ts_ms=self.clock(), approval_id=approval_id, outcome="expired"))
            return "expired"
        symbol = card["symbol"]
        try:
            ticker = await self.client.ticker(symbol)
        except ExchangeError as exc:  # nothing traded: close the card, or it stays APPROVED ("executing") for ever
            await self.approvals.transition(approval_id, "APPROVED", "FAILED_RECHECK", self.clock())
            self.bus.publish(
                ApprovalResolved(
                    ts_ms=self.clock(),
                    approval_id=approval_id,
                    outcome="failed_recheck",
                    detail=f"price check failed: {exc}",
                )
            )
            return "failed_recheck"
        now_price = Decimal(str(ticker["price"]))
        signal_price = Decimal(card["payload"]["price"])
        drift = abs(now_price - signal_price) / signal_price * 100
        if drift > self.options.approval_max_drift_pct:
            await self.approvals.transition(approval_id, "APPROVED", "FAILED_RECHECK", self.clock())
            self.bus.publish(
                ApprovalResolved(
                    ts_ms=self.clock(),
                    approval_id=approval_id,
                    outcome="failed_recheck",
                    detail=f"price moved {drift:.2f}% since the signal",
                )
            )
            return "failed_recheck"
        opened = await self.enter(symbol, decision)
        outcome = "executed" if opened is not None else "failed_recheck"
        await self.approvals.transition(approval_id, "APPROVED", outcome.upper(), self.clock())
        self.bus.publish(
            ApprovalResolved(ts_ms=self.clock(), approval_id=approval_id, outcome=outcome, detail=f"by {by}")
        )
        return outcome

    async def reject(self, approval_id: str, by: str = "console") -> bool:
        if self.approvals is None or not await self.approvals.transition(
            approval_id, "PENDING", "REJECTED", self.clock()
        ):
            return False
        self.pending_entries.pop(approval_id, None)
        self.bus.publish(
            ApprovalResolved(ts_ms=self.clock(), approval_id=approval_id, outcome="rejected", detail=f"by {by}")
        )
        return True

    async def expire_approvals(self) -> list[str]:
        """Drop every card past its expiry (a card is never executed late)."""
        if self.approvals is None:
            return []
        done = []
        for approval_id in await self.approvals.expired(self.clock()):
            if await self.approvals.transition(approval_id, "PENDING", "EXPIRED", self.clock()):
                self.pending_entries.pop(approval_id, None)
                self.bus.publish(ApprovalResolved(ts_ms=self.clock(), approval_id=approval_id, outcome="expired"))
                done.append(approval_id)
        return done

    # ------------------------------------------------------------------ entries

    async def enter(self, symbol: str, decision: Decision, *, started: float | None = None) -> Protected | None:
        """Size, run the pre-trade checks, place the entry (slippage-guarded IOC), then protect it at once.

        Symbols are handled concurrently (engine.runtime.lanes), entries one at a time: each one's checks must
        see the positions and margin of the one before, or two at once could pass max_positions together.
        """
        async with self._positions_lock:
            return await self._enter(symbol, decision, started)

    async def _enter(self, symbol: str, decision: Decision, started: float | None) -> Protected | None:
        blocked = self.entries_blocked()
        if blocked is not None:
            self.bus.publish(
                OrderRejected(ts_ms=self.clock(), symbol=symbol, client_oid="", purpose="entry", reason=blocked)
            )
            return None
        spec = self.specs[symbol]
        side = Side.LONG if decision.side == "long" else Side.SHORT
        atr = None if decision.atr_pct is None else Decimal(repr(decision.atr_pct))
        lev = select_leverage(self.cfg, atr, exchange_max=spec.max_leverage)
        ticker = await self.client.ticker(symbol)
        ref = Decimal(ticker["bestAskPrice"] if side is Side.LONG else ticker["bestBidPrice"])
        size = position_size(
            self.cfg,
            equity=self.risk.equity,
            abs_score=Decimal(repr(abs(decision.final_score))),
            atr_pct=atr,
            leverage=lev,
            ref_price=ref,
            spec=spec,
        )
        margin = spec.base_quantity(size.lots) * ref / lev
        open_margins = self.open_margins()
        checks = pretrade_checks(
            self.cfg, self.risk, EntryProposal(symbol, margin, size.lots, spec.lot_size, self.clock()), open_margins
        )
        failing = [g for g in checks if not g.passed]
        for g in failing:
            if g.code in (
                "daily_loss_limit",
                "consecutive_losses",
                "circuit_breaker",
                "max_positions",
                "max_total_margin",
            ):
                self.bus.publish(
                    HaltRaised(ts_ms=self.clock(), limit=g.code, value=str(g.value), threshold=str(g.threshold))
                )
        if failing:
            self.bus.publish(
                OrderRejected(
                    ts_ms=self.clock(),
                    symbol=symbol,
                    client_oid="",
                    purpose="entry",
                    reason=",".join(g.code for g in failing),
                )
            )
            return None
        order_side = OrderSide.BUY if side is Side.LONG else OrderSide.SELL
        client_oid = new_client_oid("en")
        await self.intents.record(client_oid, symbol, "entry", order_side.value, size.lots, None, self.clock())
        if not self.trading_live:
            req = OrderRequest(
                symbol=symbol,
                side=order_side,
                lots=size.lots,
                leverage=lev,
                client_oid=client_oid,
                margin_mode=self.options.margin_mode,
                position_side=self._position_side(side),
            )
            try:
                await self.client.place_order(req, test=True)
                await self.intents.mark(client_oid, "done", detail="validated only (shadow)")
            except ExchangeError as exc:
                await self.intents.mark(client_oid, "failed", detail=str(exc))
            return None
        try:
            order = await self.client.market_entry_guarded(
                symbol,
                order_side,
                size.lots,
                lev,
                self.options.max_entry_slippage_pct,
                spec.tick_size,
                client_oid=client_oid,
                position_side=self._position_side(side),
            )
        except ExchangeError as exc:
            await self.intents.mark(client_oid, "failed", detail=str(exc))
            self.bus.publish(
                OrderRejected(
                    ts_ms=self.clock(), symbol=symbol, client_oid=client_oid, purpose="entry", reason=str(exc)
                )
            )
            return None
        await self.intents.mark(client_oid, "done", order.id)
        if self.latency_observer is not None and started is not None:  # not for approvals: a person took time
            self.latency_observer(time.perf_counter() - started)
        self.bus.publish(
            OrderPlaced(
                ts_ms=self.clock(),
                symbol=symbol,
                client_oid=client_oid,
                order_id=order.id,
                purpose="entry",
                side=order_side.value,
                lots=size.lots,
                price=order.price,
            )
        )
        if order.filled_lots == 0:
            return None  # the IOC guard refused to chase the price
        fill = order.filled_value / (order.filled_lots * spec.multiplier)
        self.risk.record_entry(symbol, self.clock())
        return await self.adopt(symbol, side, order.filled_lots, fill, lev, opened_ms=order.created_at or None)

    async def adopt(
        self, symbol: str, side: Side, lots: int, entry: Decimal, leverage: int, opened_ms: int | None = None
    ) -> Protected:
        """Manage a position: initial levels from the real entry, stop and TP placed on the exchange.

        ``opened_ms`` is the exchange's time of the opening (its fills are stamped on that clock, and the close
        is accounted from the fills after it); the engine's own clock only when the exchange did not say.
        """
        spec = self.specs[symbol]
        levels = initial_levels(self.cfg, side, entry, leverage, spec.tick_size)
        p = Protected(
            symbol=symbol,
            side=side,
            lots=lots,
            entry=entry,
            leverage=leverage,
            stop=levels.stop,
            stop_reason=StopReason.INITIAL.value,
            take_profit=levels.take_profit,
            tp_roi=self.cfg.risk_management.take_profit_roi,
            trailing=False,
            stop_order_id=None,
            tp_order_id=None,
            replace_state="STEADY",
            pending_client_oid=None,
            pending_price=None,
            opened_ms=opened_ms or self.clock(),
        )
        self.managed[symbol] = Managed(p, self._rule(p))
        await self.positions_repo.save(p.row())
        self.bus.publish(
            PositionOpened(
                ts_ms=self.clock(),
                symbol=symbol,
                side=side.value,
                lots=lots,
                entry=entry,
                leverage=leverage,
                stop=p.stop,
                take_profit=p.take_profit,
            )
        )
        await self.coordinator.protect(p)
        return p

    def _position_side(self, side: Side) -> str | None:
        """In hedge position mode every order names its side; in one-way mode none does."""
        if not self.options.hedge:
            return None
        return "LONG" if side is Side.LONG else "SHORT"

    def _rule(self, p: Protected) -> StopManager:
        rule = StopManager(
            self.cfg,
            side=p.side,
            entry=p.entry,
            leverage=p.leverage,
            tick=self.specs[p.symbol].tick_size,
            stop=p.stop,
            take_profit=p.take_profit,
            stop_reason=StopReason(p.stop_reason),
        )
        rule.tp_roi = p.tp_roi
        rule.trailing_active = p.trailing
        return rule

    # ------------------------------------------------------------------ stops

    def open_margins(self) -> dict[str, Decimal]:
        """Initial margin of every managed position, each with its own contract's multiplier."""
        return {
            s: m.protection.entry * self.specs[s].multiplier * m.protection.lots / m.protection.leverage
            for s, m in self.managed.items()
        }

    async def on_mark(self, symbol: str, mark: Decimal) -> bool:
        """A mark-price tick: apply the stop rule (debounced) and move the exchange stop if it improved.

        True when the tick moved the stop (the replace completed)."""
        m = self.managed.get(symbol)
        if m is None or m.protection.replace_state != "STEADY" or self._flattening:
            return False
        update = m.rule.update(mark, now_ms=self.clock())
        if update is None:
            return False
        p = m.protection
        p.trailing = m.rule.trailing_active
        p.tp_roi = m.rule.tp_roi
        return await self.coordinator.move_stop(p, update.new_stop, update.reason.value, update.take_profit)

    # ------------------------------------------------------------------ reconciliation

    async def sync_positions(self) -> list[str]:
        """The exchange is the truth: close what it closed, alarm on a missing stop. Returns the differences."""
        async with self._positions_lock:  # an entry on its way finishes (and is managed) before we compare
            return await self._sync_positions()

    async def _sync_positions(self) -> list[str]:
        diffs: list[str] = []
        live = {p.symbol: p for p in await self.client.positions() if p.is_open}
        for symbol, m in list(self.managed.items()):
            pos = live.get(symbol)
            if pos is None:
                await self._closed(symbol, m)
                continue
            if abs(pos.lots) != m.protection.lots:
                diffs.append(f"{symbol}: engine {m.protection.lots} lots, exchange {abs(pos.lots)}")
                m.protection.lots = abs(pos.lots)
            stops = {o.id for o in await self.client.open_stop_orders(symbol)}
            if m.protection.stop_order_id not in stops and m.protection.replace_state == "STEADY":
                self.bus.publish(
                    StopMissing(
                        ts_ms=self.clock(),
                        symbol=symbol,
                        detail=f"stop {m.protection.stop_order_id} not on the exchange",
                    )
                )
                diffs.append(f"{symbol}: stop missing")
                m.protection.stop_order_id = None
                if m.protection.tp_order_id not in stops:
                    m.protection.tp_order_id = None
                await self.coordinator.protect(m.protection)
        for symbol, pos in live.items():
            if symbol not in self.managed and symbol in self.specs:
                diffs.append(f"{symbol}: unmanaged position of {pos.lots} lots adopted")
                await self.adopt(
                    symbol,
                    Side.LONG if pos.lots > 0 else Side.SHORT,
                    abs(pos.lots),
                    pos.avg_entry,
                    int(pos.leverage) or self.cfg.risk_management.leverage_default,
                    opened_ms=pos.opened_ms,
                )
        return diffs

    async def _closed(self, symbol: str, m: Managed, *, reason: str | None = None) -> None:
        """The exchange closed the position (stop, TP or liquidation): account for it and clear leftovers.

        Claimed first, before any await: a reconciliation and a kill switch noticing the same close must not
        account for it twice.
        """
        if self.managed.get(symbol) is not m:
            return
        del self.managed[symbol]
        p = m.protection
        fills = [f for f in await self.client.fills(symbol=symbol) if f.ts_ms >= p.opened_ms]
        exit_side = "sell" if p.side is Side.LONG else "buy"
        closing = [f for f in fills if f.side.value == exit_side]
        spec = self.specs[symbol]
        if closing:
            lots = sum(f.lots for f in closing)
            exit_price: Decimal = sum((f.price * f.lots for f in closing), Decimal(0)) / lots
        else:
            exit_price = p.stop
        funding = await self._funding_paid(symbol, p.opened_ms)
        pnl = trade_pnl(
            p.side,
            entry=p.entry,
            exit_price=exit_price,
            quantity=spec.base_quantity(p.lots),
            leverage=p.leverage,
            fee_in=self.cfg.fees.entry_fee_rate,
            fee_out=self.cfg.fees.exit_fee_rate,
            funding=funding,
        )
        roi = gross_roi(p.side, p.entry, exit_price, p.leverage)
        if reason is None:
            reason = m.rule.exit_reason if roi < self.cfg.risk_management.take_profit_roi - 1 else "take_profit"
        for oid in (p.stop_order_id, p.tp_order_id):
            if oid:
                with contextlib.suppress(ExchangeError):
                    await self.client.cancel_order(oid)
        await self.positions_repo.delete(symbol)
        self.risk.record_close(symbol, pnl.net, self.clock())
        self.risk.equity += pnl.net
        self.bus.publish(
            PositionClosed(
                ts_ms=self.clock(),
                symbol=symbol,
                side=p.side.value,
                exit_reason=reason,
                entry=p.entry,
                exit=exit_price,
                gross=pnl.gross,
                fees=pnl.fees,
                funding=pnl.funding,
                net=pnl.net,
            )
        )

    async def _funding_paid(self, symbol: str, since_ms: int) -> Decimal:
        """Funding paid while the position was open (the exchange reports received as positive)."""
        try:
            records = await self.client.funding_history(symbol)
        except ExchangeError as exc:
            log.warning("funding.history_failed", symbol=symbol, error=str(exc))
            return Decimal(0)
        return -sum((Decimal(str(r["funding"])) for r in records if int(r["timePoint"]) >= since_ms), Decimal(0))

    async def recover(self) -> list[str]:
        """After a restart: reload managed positions, finish interrupted stop moves, reconcile with the exchange."""
        for row in await self.positions_repo.all():
            p = Protected.from_row(row)
            self.managed[p.symbol] = Managed(p, self._rule(p))
        for intent in await self.intents.pending():
            try:
                known = await self.client.order_by_client_oid(intent.client_oid)
                await self.intents.mark(intent.client_oid, "done", known.id, "found on the exchange after restart")
            except ExchangeError:
                await self.intents.mark(intent.client_oid, "failed", detail="unknown to the exchange after restart")
        for m in list(self.managed.values()):
            await self.coordinator.resume(m.protection)
        return await self.sync_positions()

    async def run_retries(self) -> int:
        """Work the persisted retry queue; returns how many items ran."""
        items = await self.retry.due(self.clock())
        for item in items:
            m = self.managed.get(str(item.payload.get("symbol")))
            if m is None:
                await self.retry.done(item.key)
                continue
            await self.coordinator.resume(m.protection)
            if m.protection.replace_state == "STEADY" and m.protection.stop_order_id and m.protection.tp_order_id:
                await self.retry.done(item.key)
        return len(items)

    # ------------------------------------------------------------------ controls

    def set_paused(self, paused: bool, by: str = "engine") -> None:
        self.paused = paused
        self.bus.publish(ModeChanged(ts_ms=self.clock(), setting="paused", value=str(paused).lower(), by=by))

    async def kill_switch(self) -> KillSwitchReport:
        """Cancel everything, close every position reduce-only, confirm flat, halt. Safe to fire twice."""
        if self.state is not TradingState.HALTED:
            self.set_state(TradingState.HALTED, "kill switch")
        async with self._positions_lock:  # an entry already on its way completes first, and is then closed too
            self._flattening = True  # no new stop moves from here; one already on its way is swept below
            try:
                return await self._flatten()
            finally:
                self._flattening = False

    async def _flatten(self) -> KillSwitchReport:
        """Account-wide, not symbol by symbol: two cancels per configured symbol would cost 25 weight each, over
        a 542-symbol universe ~13,500 against KuCoin's 2,000 per 30 s, minutes of waiting on the rate limit.
        One request cancels every untriggered stop; plain orders are cancelled only where some are open."""
        cancelled = await self._cancel_every_stop()
        closed: list[str] = []
        for _ in range(3):  # a listing is one page: list again until nothing is left
            blind = False
            try:
                symbols = sorted({o.symbol for o in await self.client.open_orders()})
            except ExchangeError as exc:
                log.error("kill.list_orders_failed", error=str(exc))
                symbols, blind = sorted(self.specs), True  # cannot see: cancel everywhere we trade, once
            if not symbols:
                break
            for symbol in symbols:
                try:
                    cancelled += len(await self.client.cancel_all_orders(symbol))
                except ExchangeError as exc:
                    log.error("kill.cancel_failed", symbol=symbol, error=str(exc))
            if blind:
                break
        crash_point("in_kill_switch")
        for pos in await self.client.positions():
            if not pos.is_open:
                continue
            side = OrderSide.SELL if pos.lots > 0 else OrderSide.BUY
            req = OrderRequest(
                symbol=pos.symbol,
                side=side,
                lots=abs(pos.lots),
                reduce_only=True,
                margin_mode=self.options.margin_mode,
                position_side=None if pos.position_side == "BOTH" else pos.position_side,
            )
            try:
                await self.client.place_order(req)
                closed.append(pos.symbol)
            except ExchangeError as exc:
                log.error("kill.close_failed", symbol=pos.symbol, error=str(exc))
        cancelled += await self._cancel_every_stop()  # a stop move already on its way may have placed one since
        leftovers = [f"{p.symbol}: {p.lots} lots" for p in await self.client.positions() if p.is_open]
        leftovers += [f"{o.symbol}: order {o.id}" for o in await self.client.open_orders()]
        leftovers += [f"{o.symbol}: stop {o.id}" for o in await self.client.open_stop_orders()]
        for symbol, m in list(self.managed.items()):
            if symbol in closed:
                m.protection.stop_order_id = m.protection.tp_order_id = None
                await self._closed(symbol, m, reason="kill_switch")
        report = KillSwitchReport(
            ts_ms=self.clock(),
            cancelled_orders=cancelled,
            closed_positions=closed,
            flat=not leftovers,
            leftovers=leftovers,
        )
        self.bus.publish(report)
        return report

    async def _cancel_every_stop(self) -> int:
        """Every untriggered stop order on the account, in one request (no symbol); how many were cancelled."""
        try:
            return len(await self.client.cancel_all_stop_orders())
        except ExchangeError as exc:
            log.error("kill.cancel_stops_failed", error=str(exc))
            return 0


def _decision_from_card(card: dict[str, Any]) -> Decision:
    from engine.gates.result import GateResult
    from engine.scoring.signals import Direction

    p = card["payload"]
    direction = Direction.BULLISH if p["side"] == "long" else Direction.BEARISH
    return Decision(
        card["symbol"],
        int(p["ts"]),
        float(p["price"]),
        float(p["score"]),
        "",
        direction,
        float(p["confidence"]),
        None if p["atr_pct"] is None else float(p["atr_pct"]),
        [GateResult("approved_card", True, detail="restored from the persisted approval card")],
    )
