"""The trading engine: closed candles → pipeline → gates → pre-trade checks → (approval) → entry → protection;
mark ticks → stop rule → coordinated stop moves; exchange state → accounting, reconciliation and halts."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from pathlib import Path
from typing import Any

import structlog

from engine.config.strategy import StrategyConfig
from engine.events import (
    ApprovalRequested,
    ApprovalResolved,
    CandleGap,
    Event,
    EventBus,
    ForeignOrderSeen,
    FundingBooked,
    HaltRaised,
    HealthChanged,
    KillSwitchReport,
    ModeChanged,
    OrderPlaced,
    OrderRejected,
    PositionClosed,
    PositionOpened,
    PositionResized,
    ResizeConfirmed,
    SignalEvaluated,
    StopMissing,
    TradingStateChanged,
)
from engine.gates.result import GateResult
from engine.marketdata.aggregate import CandleAggregator
from engine.marketdata.klines import closed_candles
from engine.models import Candle, Side, timeframe_ms
from engine.risk.contract import ContractSpec, contract_spec_from_payload
from engine.risk.formulas import (
    TradePnl,
    gross_roi,
    initial_levels,
    position_size,
    price_at_roi,
    round_take_profit,
    select_leverage,
    trade_pnl,
)
from engine.risk.limits import DAY_MS, RiskState
from engine.risk.pretrade import EntryProposal, pretrade_checks
from engine.risk.stops import StopManager, StopReason
from engine.runtime.chaos import crash_point
from engine.runtime.liquidation import LiquidationWatch
from engine.runtime.microstructure import (
    SHADOW_GRACE_S,
    Market,
    Tape,
    TickerPriceError,
    avoid_entry_gate,
    micro_shadow,
    read_market,
    ticker_price,
)
from engine.runtime.protection import RETRY_BASE_MS, TP_CANCEL, Protected, StopCoordinator, retry_delay_ms
from engine.runtime.trading_state import TradingState, check_transition
from engine.scoring.pipeline import Decision, SymbolPipeline
from exchange.errors import ExchangeError, OrderNotFoundError, PositionEmptyError
from exchange.ids import new_client_oid
from exchange.models import ClosedPosition, Fill, Order, OrderRequest, OrderSide, Position, StopDirection
from exchange.rest import LIST_PAGE_SIZE, MAX_PAGES, KucoinFuturesClient
from storage.repos import Approvals, EventLog, Intent, Intents, Positions, RetryItem, RetryQueue

log = structlog.get_logger(__name__)
RETRY_INTERVAL_S = 1.0  # how often the retry queue is looked at (each item keeps its own backoff)
# The client reads every page of the open-order and stop-order listings up to a bound: a listing that reached it
# may be incomplete, so no intent is pruned on its say-so.
LISTING_CAP = MAX_PAGES * LIST_PAGE_SIZE
# Waits between reads of a just-closed trade's fills while the history does not list its close yet (§4.5).
CLOSE_FILLS_RETRY_S = (0.2, 0.5, 1.0)
# An exchange leverage this close above a whole number is that number (4.0000001 is a 4x position, not 5x).
LEVERAGE_NOISE = Decimal("0.01")
FUNDING_RETRY_CAP_MS = 300_000  # an owed funding read is asked again at least every 5 minutes
# Waits between reads of an entry IOC that KuCoin still shows open (its matching engine runs behind the placement's
# answer): ~5 s in all, then the IOC is cancelled and read a last time.
ENTRY_DONE_WAITS_S = (0.05, 0.1, 0.2, 0.5, 1.0, 1.0, 2.0)


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
        if cfg.microstructure.apply_to_live_score:  # the runtime refuses it at start; no other path may ignore it
            raise ValueError(
                "microstructure.applyToLiveScore = true is not implemented: the micro score is shadow-only"
            )
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
        self.coordinator.tick_of = lambda s: spec.tick_size if (spec := self.specs.get(s)) is not None else None
        self.last_decision: dict[str, Decision] = {}
        # Held by whatever changes which positions the engine manages: an entry, a reconciliation, the kill switch.
        # Symbols run concurrently (engine.runtime.lanes); without it a reconciliation triggered by the entry's own
        # position push adopted the fresh position a second time (two stops, two take-profits).
        self._positions_lock = asyncio.Lock()
        self._flattening = False  # the kill switch is closing everything
        self._retrying = asyncio.Lock()
        # Pending intents the restart could not settle (the exchange did not answer): the retry loop asks again.
        self.unsettled_intents: set[str] = set()
        self.stream_volume = "unverified"  # -> "trusted" after 3 agreeing checks, or "rest" after one that is not
        self._volume_checks = 0
        self._volume_agreed = 0
        self.explain_from = cfg.effective_gates().min_score  # |score| from which a decision is recorded in full
        self.recent_candles: dict[str, deque[Candle]] = {s: deque(maxlen=288) for s in options.symbols}
        self.pending_entries: dict[str, Decision] = {}
        self.exchange_status = "open"  # GET /api/v1/status as last seen (reconciliation asks)
        self.entry_refusals: dict[str, str] = {}  # why the last entry of a symbol placed nothing (for approval cards)
        self._foreign_seen: set[str] = set()  # orders not ours already reported (once each)
        self._other_side_seen: set[str] = set()  # hedge-mode positions beside a managed one, reported once each
        self.liquidation = LiquidationWatch(cfg)
        self._resize_unconfirmed: set[str] = set()  # resizes announced before their stop and TP were confirmed
        # After a restart, until the first look at each position: the side and lots the trader was last told of it
        # (the event log), so a resize stored but never announced before a crash is announced then (restore_resizes).
        self._told_lots: dict[str, tuple[str, int]] = {}

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
        if self.exchange_status != "open":
            return f"KuCoin Futures status {self.exchange_status}"
        return None

    def contract_blocked(self, symbol: str) -> str | None:
        """Why ``symbol``'s contract takes no new entry right now (KuCoin refuses orders on a contract that is not
        Open: Paused, CancelOnly, BeingSettled, Settled, Closed or delisted), or None."""
        spec = self.specs.get(symbol)
        if spec is None:
            return f"no contract spec for {symbol}"
        return None if spec.is_open else f"contract {symbol} is {spec.status}"

    def closed_contracts(self) -> dict[str, str]:
        """Configured symbols whose contract is not Open, with its status (for /status)."""
        return {s: self.specs[s].status for s in self.options.symbols if s in self.specs and not self.specs[s].is_open}

    def use_spec(self, spec: ContractSpec) -> None:
        """A refreshed spec: new entries size and round with it, and an open position's stop rule rounds its next
        moves to the new tick (its current stop stays where it is: never untrailed)."""
        self.specs[spec.symbol] = spec
        m = self.managed.get(spec.symbol)
        if m is not None:
            m.rule.tick = spec.tick_size

    async def check_exchange_status(self) -> str:
        """Ask KuCoin whether it is open. In maintenance (``close``) or ``cancelonly`` no new order can be placed, so
        entries wait instead of failing one by one, and the change is announced both ways. Stops already on the
        exchange stay; a stop move that fails meanwhile waits in the retry queue. An unanswered question changes
        nothing (the last known status holds)."""
        try:
            status, msg = await self.client.system_status()
        except (ExchangeError, KeyError, TypeError) as exc:
            log.warning("exchange.status_unknown", error=str(exc))
            return self.exchange_status
        if status != self.exchange_status:
            detail = f"KuCoin Futures status {status}" + (f" ({msg})" if msg else "")
            if status != "open":
                detail += ": no new entries until it opens again; stops on the exchange stay"
            self.bus.publish(
                HealthChanged(ts_ms=self.clock(), component="exchange", healthy=status == "open", detail=detail)
            )
            log.warning("exchange.status_changed", old=self.exchange_status, new=status, msg=msg)
            self.exchange_status = status
        return status

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
            missing = [c for c in closed_candles(rows, symbol) if last < c.ts < candle.ts]
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
        checked = closed_candles([row], symbol)
        if not checked:  # malformed (logged): keep the stream's
            return candle
        rest = checked[0]
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
        await self.on_decision(symbol, decision, started=started)
        return decision

    async def on_decision(self, symbol: str, decision: Decision, *, started: float | None = None) -> None:
        """Record a bar's decision and act on it. A passed one first reads the market once: the entry's ticker and
        gate-12 tape, and with them the shadow score's reads (§11), recorded with the decision; the entry then uses
        those reads, so the shadow score costs it no round trip of its own."""
        acting = decision.passed and symbol not in self.managed
        # A contract KuCoin does not keep Open takes no entry: its market is not read either.
        closed = self.contract_blocked(symbol) if acting else None
        market: Market | None = None
        entry = False  # the entry's own reads are among them (auto mode, entries not blocked)
        if acting and closed is None:
            manual = self.options.control == "manual"
            shadow = self.cfg.microstructure.shadow_logging
            # No ticker nor tape for an entry refused anyway (paused, a drift, KuCoin's maintenance): the shadow's
            # reads only, and the entry decides on its own when it runs.
            entry = not manual and self.entries_blocked() is None
            if shadow or entry:
                market = await read_market(
                    self.client, symbol, self.cfg, entry=entry, shadow=shadow, grace_s=SHADOW_GRACE_S
                )
            if shadow and market is not None:
                decision.extra["micro"] = micro_shadow(self.cfg, decision.final_score, market)
                log.info(
                    "micro.shadow",
                    symbol=symbol,
                    final=decision.final_score,
                    micro=decision.extra["micro"]["micro_score"],
                    shadow=decision.extra["micro"]["shadow_score"],
                )
        # Every bar of every symbol is recorded; the full breakdown (signals, contributions, every gate) only for
        # a decision that passed or came within reach of the entry threshold: across a 500-symbol universe the
        # rest would cost ~600 MB of storage a day and most of the per-candle time.
        explain = decision.passed or abs(decision.final_score) >= self.explain_from
        self.bus.publish(
            SignalEvaluated(
                ts_ms=self.clock(), symbol=symbol, decision=decision.to_dict() if explain else decision.summary()
            )
        )
        if acting:
            if closed is not None:  # said at once, and no approval card for an entry KuCoin would refuse
                self._refuse(symbol, "", closed)
            elif self.options.control == "manual":
                await self.request_approval(symbol, decision)
            else:
                await self.enter(symbol, decision, started=started, market=market if entry else None)

    # ------------------------------------------------------------------ manual approvals

    async def request_approval(self, symbol: str, decision: Decision) -> str | None:
        """Manual mode: park the decision as a persisted card that a person approves or rejects before expiry."""
        if self.approvals is None:
            raise RuntimeError("manual control mode needs the approvals repository")
        spec = self.specs[symbol]
        side = Side.LONG if decision.side == "long" else Side.SHORT
        atr = None if decision.atr_pct is None else Decimal(repr(decision.atr_pct))
        lev = select_leverage(self.cfg, atr, exchange_max=spec.max_leverage, mmr=spec.maintenance_margin_rate)
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
        micro = decision.extra.get("micro")
        card = {
            "side": side.value,
            "price": str(price),
            "score": decision.final_score,
            "atr_pct": decision.atr_pct,
            "confidence": decision.confidence,
            "ts": decision.ts,
            "micro": micro,
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
                score=decision.final_score,
                confidence=decision.confidence,
                gates=[g.code for g in decision.gates if g.passed],
                micro_score=None if micro is None else micro["micro_score"],
                shadow_score=None if micro is None else micro["shadow_score"],
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
            return await self._resolve_card(approval_id, "expired", "")
        symbol = card["symbol"]
        try:
            now_price = ticker_price(symbol, await self.client.ticker(symbol), "price")
        except (ExchangeError, TickerPriceError, TypeError, ValueError) as exc:  # nothing traded: close the card,
            # or it stays APPROVED ("executing") for ever; TypeError/ValueError: an answer that is no ticker
            return await self._resolve_card(approval_id, "failed_recheck", f"price check failed: {exc}")
        signal_price = Decimal(card["payload"]["price"])
        drift = abs(now_price - signal_price) / signal_price * 100
        if drift > self.options.approval_max_drift_pct:
            return await self._resolve_card(approval_id, "failed_recheck", f"price moved {drift:.2f}% since the signal")
        self.entry_refusals.pop(symbol, None)
        try:
            opened = await self.enter(symbol, decision)
        except ExchangeError as exc:  # the card must not stay APPROVED ("executing") for ever
            detail = f"entry failed: {exc} (a fill, if any, is adopted by the reconciliation)"
            return await self._resolve_card(approval_id, "failed_recheck", detail)
        if opened is None:  # refused by a check, a halt or the exchange, or nothing filled: the card says which
            refusal = self.entry_refusals.pop(symbol, "no position opened")
            return await self._resolve_card(approval_id, "failed_recheck", f"by {by}: {refusal}")
        return await self._resolve_card(approval_id, "executed", f"by {by}")

    async def console_decide(self, approval_id: str, action: str) -> str:
        """POST /approvals/<id>/<action> from the server: like a card's buttons, but an id no card ever had (a typo
        copying it from the log) answers ``unknown`` instead of the buttons' catch-all ``expired``."""
        if action == "approve":
            outcome = await self.approve(approval_id, by="console")
        else:
            outcome = "rejected" if await self.reject(approval_id, by="console") else "expired"
        if outcome == "expired" and self.approvals is not None and await self.approvals.get(approval_id) is None:
            return "unknown"
        return outcome

    async def _resolve_card(self, approval_id: str, outcome: str, detail: str) -> str:
        """An APPROVED card ends in ``outcome``, stored and announced; returns the outcome."""
        if self.approvals is not None:
            await self.approvals.transition(approval_id, "APPROVED", outcome.upper(), self.clock())
        self.bus.publish(ApprovalResolved(ts_ms=self.clock(), approval_id=approval_id, outcome=outcome, detail=detail))
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

    async def prune_history(self, before_ms: int) -> tuple[int, int]:
        """Delete finished approval cards and the intents of finished orders recorded before ``before_ms``; returns
        (cards, intents) deleted. The intents only with the exchange's word on which orders are live now: when it
        cannot be asked, or its listing may be cut short, none are deleted this time (a live order whose intent
        is gone would be neither swept nor recognised as the engine's)."""
        cards = 0 if self.approvals is None else await self.approvals.prune_finished(before_ms)
        try:
            orders = await self.client.open_orders()
            stops = await self.client.open_stop_orders()
        except ExchangeError as exc:
            log.warning("intents.prune_skipped", reason=f"open orders unknown: {exc}")
            return cards, 0
        if len(orders) >= LISTING_CAP or len(stops) >= LISTING_CAP:
            log.warning("intents.prune_skipped", reason="open-order listing may be incomplete", orders=len(orders))
            return cards, 0
        live = {x for o in (*orders, *stops) for x in (o.id, o.client_oid) if x}
        return cards, await self.intents.prune_finished(before_ms, live)

    # ------------------------------------------------------------------ entries

    async def enter(
        self, symbol: str, decision: Decision, *, started: float | None = None, market: Market | None = None
    ) -> Protected | None:
        """Size, run the pre-trade checks, place the entry (slippage-guarded IOC), then protect it at once.

        Symbols are handled concurrently (engine.runtime.lanes), entries one at a time: each one's checks must
        see the positions and margin of the one before, or two at once could pass max_positions together.
        ``market``: the reads made at the decision (``on_decision``), used if still fresh, else read again.
        """
        async with self._positions_lock:
            return await self._enter(symbol, decision, started, market)

    async def _enter(
        self, symbol: str, decision: Decision, started: float | None, market: Market | None = None
    ) -> Protected | None:
        blocked = self.entries_blocked() or self.contract_blocked(symbol)
        if blocked is not None:
            self._refuse(symbol, "", blocked)
            return None
        spec = self.specs[symbol]
        side = Side.LONG if decision.side == "long" else Side.SHORT
        atr = None if decision.atr_pct is None else Decimal(repr(decision.atr_pct))
        lev = select_leverage(self.cfg, atr, exchange_max=spec.max_leverage, mmr=spec.maintenance_margin_rate)
        micro_gate: GateResult | None = None
        if market is None or not market.fresh():  # gate 12 (§11): live data only, read with the entry's ticker
            market = await read_market(self.client, symbol, self.cfg, entry=True, shadow=False)
        if market.ticker is None:  # the exchange failing the ticker (a 429 storm past the retries) refuses the entry
            self._refuse(symbol, "", f"market data unavailable: {market.ticker_error}")
            return None
        ticker = market.ticker
        if self.cfg.gates.live_avoid_entry_filter:
            micro_gate = avoid_entry_gate(self.cfg, ticker, market.tape or Tape(None, None, "tape not read"))
        try:
            ref = ticker_price(symbol, ticker, "bestAskPrice" if side is Side.LONG else "bestBidPrice")
        except TickerPriceError as exc:  # gate 12 off looks at no book: without this it raised out of the lane
            self._refuse(symbol, "", f"market data unavailable: {exc}")
            return None
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
        if micro_gate is not None:
            checks.append(micro_gate)
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
            self._refuse(
                symbol, "", ",".join(f"{g.code} ({g.detail})" if g.code == "avoid_entry" else g.code for g in failing)
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
                self.entry_refusals[symbol] = "validated only: orders are not sent in this mode"
            except ExchangeError as exc:
                await self.intents.mark(client_oid, "failed", detail=str(exc))
                self.entry_refusals[symbol] = f"validation refused: {exc}"
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
            self._refuse(symbol, client_oid, str(exc))
            return None
        order = await self._entry_done(order)
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
        if order.filled_lots == 0:  # the IOC guard refused to chase the price
            self.entry_refusals[symbol] = (
                f"nothing filled within {self.options.max_entry_slippage_pct}% of the price (the order was cancelled)"
            )
            return None
        fill = order.filled_value / (order.filled_lots * spec.multiplier)
        self.risk.record_entry(symbol, self.clock())
        return await self.adopt(symbol, side, order.filled_lots, fill, lev, opened_ms=order.created_at or None)

    async def _entry_done(self, order: Order) -> Order:
        """The entry IOC once its matching ran. KuCoin answers the placement before its matching engine has run the
        order: read at once it can show ``open`` with nothing (or part) filled, its fills and position push coming
        later. Taken at that word, a filled entry was called "nothing filled" and left bare until a reconciliation
        adopted it. So an order still open is read again until done; one still open after ~5 s is cancelled (an
        IOC's remainder never fills later) and read a last time. What it filled then is what the entry manages;
        lots that fill after that are found by the reconciliation, which resizes the stop to them."""
        for wait in ENTRY_DONE_WAITS_S:
            if not order.is_active:
                return order
            await asyncio.sleep(wait)
            with contextlib.suppress(ExchangeError):
                order = await self.client.order_by_id(order.id)
        if not order.is_active:
            return order
        log.warning("entry.still_open", symbol=order.symbol, order_id=order.id, filled=order.filled_lots)
        with contextlib.suppress(ExchangeError):
            await self.client.cancel_order(order.id)
        with contextlib.suppress(ExchangeError):
            order = await self.client.order_by_id(order.id)
        return order

    def _refuse(self, symbol: str, client_oid: str, reason: str) -> None:
        """An entry that placed nothing: announced, and kept for the approval card that asked for it."""
        self.entry_refusals[symbol] = reason
        self.bus.publish(
            OrderRejected(ts_ms=self.clock(), symbol=symbol, client_oid=client_oid, purpose="entry", reason=reason)
        )

    async def adopt(
        self,
        symbol: str,
        side: Side,
        lots: int,
        entry: Decimal,
        leverage: int,
        opened_ms: int | None = None,
        *,
        found: list[Order] | None = None,
    ) -> Protected:
        """Manage a position: initial levels from the real entry, stop and TP placed on the exchange.

        ``opened_ms`` is the exchange's time of the opening (its fills are stamped on that clock, and the close
        is accounted from the fills after it); the engine's own clock only when the exchange did not say.
        ``found``: reduce-only exit stops the engine placed earlier for this position (a re-adoption after the
        engine lost its record). A stop tighter or a TP further than the initial levels is kept: never untrail.
        An order of the right size is taken over as it is; otherwise a new one is placed at its price.
        """
        spec = self.specs[symbol]
        levels = initial_levels(self.cfg, side, entry, leverage, spec.tick_size)
        stop, take_profit = levels.stop, levels.take_profit
        stop_id = tp_id = None
        stop_dir = StopDirection.DOWN if side is Side.LONG else StopDirection.UP
        for o in found or []:
            if o.stop_price is None:
                continue
            if o.stop is stop_dir and side.further(o.stop_price, stop):
                stop, stop_id = o.stop_price, o.id if o.lots == lots else None
            elif o.stop is not stop_dir and side.further(o.stop_price, take_profit):  # a TP further out
                take_profit, tp_id = o.stop_price, o.id if o.lots == lots else None
        if stop_id is None:
            stop_id = next(
                (o.id for o in found or [] if o.stop is stop_dir and o.stop_price == stop and o.lots == lots), None
            )
        if tp_id is None:
            tp_id = next(
                (
                    o.id
                    for o in found or []
                    if o.stop is not stop_dir and o.stop_price == take_profit and o.lots == lots
                ),
                None,
            )
        stop_roi = gross_roi(side, entry, stop, leverage)
        tp_roi = max(self.cfg.risk_management.take_profit_roi, gross_roi(side, entry, take_profit, leverage))
        p = Protected(
            symbol=symbol,
            side=side,
            lots=lots,
            entry=entry,
            leverage=leverage,
            stop=stop,
            stop_reason=(StopReason.INITIAL if stop == levels.stop or stop_roi <= 0 else StopReason.PROFIT_LOCK).value,
            take_profit=take_profit,
            tp_roi=tp_roi,
            trailing=False,
            stop_order_id=stop_id,
            tp_order_id=tp_id,
            replace_state="STEADY",
            pending_client_oid=None,
            pending_price=None,
            opened_ms=opened_ms or self.clock(),
        )
        self.managed[symbol] = Managed(p, self._rule(p))
        self._told_lots.pop(symbol, None)  # what was said of an earlier position on the symbol is not this one's
        self.coordinator.forget(symbol)
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
        await self.coordinator.protect(p, look=False)  # ``found`` (or a fresh entry): nothing else to look for
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
        if m is None:
            return False
        near = self.liquidation.check(m.protection, mark, self.clock(), self.specs[symbol].tick_size)
        if near is not None:
            self.bus.publish(near)
        if m.protection.replace_state != "STEADY" or self._flattening:
            return False
        p = m.protection
        if p.side.further(p.stop, m.rule.stop):
            # The exchange stop is ahead of the rule (a replace finished after a restart rebuilt the rule from the
            # stop before it, or a re-adopted stop): the rule starts from the stop that is really there.
            m.rule.stop, m.rule.stop_reason = p.stop, StopReason(p.stop_reason)
        update = m.rule.update(mark, now_ms=self.clock())
        if update is None:
            return False
        p.trailing = m.rule.trailing_active
        p.tp_roi = m.rule.tp_roi
        return await self.coordinator.move_stop(p, update.new_stop, update.reason.value, update.take_profit)

    async def restore_risk(self, log: EventLog, *, days: int = 2) -> None:
        """Rebuild today's realised PnL, loss streak and cooldowns from the event log (see RiskState.restore)."""
        since = self.clock() - days * DAY_MS
        closes = [(e.symbol, e.net, e.ts_ms) for e in await log.closed_trades(since)]  # with funding read later
        entries = [
            (e.symbol, e.ts_ms)
            for e in await log.recent(10_000, kind="position_opened", since_ms=since)
            if isinstance(e, PositionOpened)
        ]
        resets = [
            e.ts_ms
            for e in await log.recent(100, kind="mode_changed", since_ms=since)
            if isinstance(e, ModeChanged) and e.setting == "circuit_breaker" and e.value == "reset"
        ]
        self.risk.restore(closes, entries, self.clock(), breaker_reset_ms=max(resets, default=None))

    async def restore_resizes(self, events: EventLog, *, limit: int = 10_000) -> None:
        """After a restart: the resizes the trader was told are "being resized, not yet confirmed" and never heard
        confirmed, from the event log (the chat's own record). Before: that list lived in memory only; the resize
        still completed through the persisted retry queue, but the follow-up never went out, so the trader's last
        word on the position was "not yet confirmed". A symbol whose newest size event is such a resize is owed
        the follow-up (a later confirmation, covered resize, close or new position ends it); the close of a
        position that went while the bot was down clears it as live (``_closed``).

        The same newest event is the size the trader was last told: the reconciliation's first look compares the
        exchange's size with it (``_told_lots``). The new size is stored before the resize is announced, so a crash
        in between (the stop move and the fills' read take seconds) left the stored size equal to the exchange's:
        the restart resized the stop but never said so."""
        kinds = ("position_opened", "position_resized", "resize_confirmed", "position_closed")
        newest: dict[str, Event] = {}
        for e in await events.recent(limit, kind=kinds):  # newest first
            newest.setdefault(getattr(e, "symbol", ""), e)
        for symbol, e in newest.items():
            if isinstance(e, PositionResized) and not e.covered:
                self._resize_unconfirmed.add(symbol)
                log.info("resize.confirmation_owed", symbol=symbol, lots=e.new_lots)
            if isinstance(e, PositionResized):
                self._told_lots[symbol] = (e.side, e.new_lots)
            elif isinstance(e, PositionOpened | ResizeConfirmed):
                self._told_lots[symbol] = (e.side, e.lots)

    async def mark_to_market(self) -> Decimal:
        """§9.3: drawdown is measured on mark-to-market equity (wallet plus unrealised PnL) from the intraday peak.

        Live, only the exchange knows that equity (fees, funding, every open position at its mark), so it is read
        from the account overview; the reconciliation calls this on every pass. Returns the equity read."""
        equity = (await self.client.account_overview()).equity
        latched = self.risk.circuit_breaker
        pct = self.cfg.risk_management.circuit_breaker_drawdown_pct
        self.risk.mark_equity(equity, self.clock(), breaker_pct=pct)
        if self.risk.circuit_breaker and not latched:
            self.bus.publish(
                HaltRaised(
                    ts_ms=self.clock(), limit="circuit_breaker", value=str(self.risk.drawdown_pct), threshold=str(pct)
                )
            )
        return equity

    # ------------------------------------------------------------------ reconciliation

    async def sync_positions(self) -> list[str]:
        """The exchange is the truth: close what it closed, alarm on a missing stop. Returns the differences."""
        async with self._positions_lock:  # an entry on its way finishes (and is managed) before we compare
            return await self._sync_positions()

    async def _sync_positions(self) -> list[str]:
        diffs: list[str] = []
        # Keyed by symbol and side: in hedge mode a symbol can hold a LONG and a SHORT, and the managed one must be
        # compared with its own side (taking the other's size for it resized its stop to the wrong lots).
        live = {(p.symbol, _side_of(p)): p for p in await self.client.positions() if p.is_open}
        for symbol, m in list(self.managed.items()):
            pos = live.get((symbol, m.protection.side))
            if pos is None:
                # Closing the books cancels the stop and TP: ask about this symbol once more before believing a
                # listing that lacks it (one that came back short would strip an open position bare).
                try:
                    side = m.protection.side  # in hedge mode the other side's position is not this one
                    found = await self.client.symbol_positions(symbol)
                    pos = next((x for x in found if x.is_open and _side_of(x) is side), None)
                except ExchangeError as exc:
                    log.warning("positions.recheck_failed", symbol=symbol, error=str(exc))
                    continue  # cannot tell: the next look decides
                if pos is None:
                    await self._closed(symbol, m)
                    continue
                log.warning("positions.listing_missed_open_position", symbol=symbol, lots=pos.lots)
                live[(symbol, _side_of(pos))] = pos
            if _side_of(pos) is not m.protection.side:
                # Closed and reopened the other way (by hand) between two looks: the old stop and TP sit on the
                # wrong side of the new position, so the old one is closed and the new one adopted below.
                diffs.append(f"{symbol}: engine {m.protection.side.value}, exchange {pos.lots} lots")
                await self._closed(symbol, m)
                continue
            self.liquidation.note_exchange(symbol, pos.liquidation_price)
            resized_from: int | None = None  # announced below, once the stop and TP are resized (or not)
            if abs(pos.lots) != m.protection.lots:
                resized_from = m.protection.lots
                diffs.append(f"{symbol}: engine {resized_from} lots, exchange {abs(pos.lots)}")
                if abs(pos.lots) > resized_from and pos.avg_entry > 0:
                    self._take_entry(m, pos.avg_entry)
                m.protection.lots = abs(pos.lots)
                await self.positions_repo.save(m.protection.row())
                crash_point("resize_saved")  # the new size stored, its stop and announcement still to come
                if m.protection.replace_state != "STEADY":
                    # A stop move owns the orders now and may have placed its stop for the old size: the retry
                    # loop resizes once it lands (the next reconciliation may be 30 s away, the added lots bare).
                    await self.retry.put("resize", f"resize:{symbol}", {"symbol": symbol}, self.clock())
            told = self._told_lots.pop(symbol, None)  # only on the first look after a restart
            if told is not None and told[0] == m.protection.side.value:
                # What the trader was last told wins: a resize stored but not announced before a crash (the stored
                # size already the exchange's) is announced now, from the size they know.
                if resized_from is None and told[1] != abs(pos.lots):
                    diffs.append(f"{symbol}: last announced {told[1]} lots, exchange {abs(pos.lots)}")
                    log.warning("resize.announcement_owed", symbol=symbol, told=told[1], lots=abs(pos.lots))
                resized_from = None if told[1] == abs(pos.lots) else told[1]
            p = m.protection
            seen = (p.stop_order_id, p.tp_order_id, p.replace_state)
            try:
                open_stops = {o.id: o for o in await self.client.open_stop_orders(symbol)}
            except ExchangeError:
                if resized_from is not None:  # said all the same, truthfully: not confirmed
                    await self._announce_resize(p, resized_from, covered=False)
                raise
            await self._recheck_unlisted(open_stops, *seen[:2])
            if (p.stop_order_id, p.tp_order_id, p.replace_state) != seen:
                # A stop or TP move on the symbol's lane changed the orders while we listed them: the listing may
                # predate it, so it proves nothing missing or mis-sized. The next look checks again.
                if resized_from is not None:
                    await self._announce_resize(p, resized_from, covered=False)
                continue
            if await self._resize_protection(m.protection, open_stops):
                open_stops = {o.id: o for o in await self.client.open_stop_orders(symbol)}  # as they are now
                if resized_from is not None:
                    crash_point("resize_stop_moved")  # the stop resized, the trader not told yet
            covered = p.replace_state == "STEADY" and _covers(p, open_stops)
            if resized_from is not None:
                # Only now: before, "now cover 100 lots" went out before the resize was tried, and stayed the word
                # when the TP's placement failed and it kept covering 179 lots.
                await self._announce_resize(p, resized_from, covered=covered)
            elif covered:
                await self._confirm_resize(p)
            stops = set(open_stops)
            if m.protection.stop_order_id not in stops and m.protection.replace_state == "STEADY":
                if m.protection.stop_order_id is not None:  # None: known missing, told when its placement failed
                    self.bus.publish(
                        StopMissing(
                            ts_ms=self.clock(),
                            symbol=symbol,
                            detail=f"stop {m.protection.stop_order_id} not on the exchange",
                        )
                    )
                diffs.append(f"{symbol}: stop missing")  # new entries keep waiting while it is
                m.protection.stop_order_id = None
                if m.protection.tp_order_id not in stops:
                    m.protection.tp_order_id = None
                await self.coordinator.protect(m.protection)
            elif m.protection.stop_order_id not in stops:
                # Mid-replace, and the stop that protects the position meanwhile is gone.
                self.bus.publish(
                    StopMissing(
                        ts_ms=self.clock(),
                        symbol=symbol,
                        detail=f"stop {p.stop_order_id} gone during a replace ({p.replace_state})",
                    )
                )
                diffs.append(f"{symbol}: stop missing")
                await self.coordinator.rescue(m.protection)
            elif m.protection.tp_order_id is not None and m.protection.tp_order_id not in stops:
                # The TP is gone but the position is not (it filled only partly, or was cancelled by hand): the
                # rest gets its TP again, at the same price and for the size that is left.
                diffs.append(f"{symbol}: take-profit missing")
                m.protection.tp_order_id = None
                await self.coordinator.protect(m.protection)
            else:
                # Both live: whatever else of ours sits on the symbol (a TP placed twice across a crash, a stop
                # whose id was lost) goes, once the kept ones are confirmed; a person's orders are only reported.
                diffs += await self.coordinator.converge(m.protection, open_stops)
            await self._report_foreign(open_stops.values())
        for (symbol, _), pos in live.items():
            if symbol in self.managed and self.managed[symbol].protection.side is not _side_of(pos):
                # Hedge mode: a position opened by hand on the other side of one the engine manages. One position a
                # symbol is all the engine manages, so this one has no stop from it: say so once, loudly.
                log.warning("reconcile.other_side_unmanaged", symbol=symbol, lots=pos.lots, side=pos.position_side)
                key = f"{symbol}:{_side_of(pos).value}:{pos.opened_ms}"
                if key not in self._other_side_seen:
                    self._other_side_seen.add(key)
                    self.bus.publish(
                        HealthChanged(
                            ts_ms=self.clock(),
                            component=f"position {symbol}",
                            healthy=False,
                            detail=(
                                f"a {_side_of(pos).value} position of {abs(pos.lots)} lots beside the managed "
                                f"{self.managed[symbol].protection.side.value} is not managed by ENYGMA: it has no "
                                "stop from the bot (protect it yourself or close it)"
                            ),
                        )
                    )
            if symbol not in self.managed and not await self._spec_for(symbol):
                diffs.append(f"{symbol}: unmanaged position of {pos.lots} lots without a contract spec: no stop")
                self.bus.publish(
                    StopMissing(ts_ms=self.clock(), symbol=symbol, detail="unknown contract: cannot protect it")
                )
                continue
            if symbol not in self.managed:
                diffs.append(f"{symbol}: unmanaged position of {pos.lots} lots adopted")
                side = _side_of(pos)
                exit_side = OrderSide.SELL if side is Side.LONG else OrderSide.BUY
                ours = [
                    o
                    for o in await self.client.open_stop_orders(symbol)
                    if o.reduce_only and o.side is exit_side and await self.coordinator.ours(o)
                ]
                p = await self.adopt(
                    symbol,
                    side,
                    abs(pos.lots),
                    pos.avg_entry,
                    await self._adopted_leverage(pos, side),
                    opened_ms=pos.opened_ms,
                    found=ours,
                )
                for o in ours:  # the adopted position's protection is on the exchange: the rest may go
                    if o.id not in (p.stop_order_id, p.tp_order_id) and p.stop_order_id and p.tp_order_id:
                        with contextlib.suppress(ExchangeError):
                            await self.client.cancel_order(o.id)
        diffs += await self._sweep_orphan_stops({symbol for symbol, _ in live})
        return diffs

    async def _adopted_leverage(self, pos: Position, side: Side) -> int:
        """The leverage a position the engine did not open really has, for its ROI-based stop and TP (§10.4:
        distance = ROI / L). KuCoin reports an isolated position's ``leverage`` margin-derived (4.9685590767 for a
        5x order): ``int()`` made that 4, and the stop sat 2.5 % ROI-distance from entry instead of 2 % (looser
        than the rule). First what was configured: a cross position's symbol leverage, an isolated one's opening
        orders' leverage (when they agree); else the exchange's figure rounded up (a stop for 5x on a 4.97x
        position is a hair tighter, never looser); 0 or missing: the configured default."""
        if pos.margin_mode == "CROSS":
            with contextlib.suppress(ExchangeError, KeyError, ValueError):
                lev = await self.client.cross_leverage(pos.symbol)
                if lev > 0:
                    return lev
        else:
            known = await self._opening_leverage(pos, side)
            if known is not None:
                return known
        if pos.leverage > 0:
            return max(1, int((pos.leverage - LEVERAGE_NOISE).to_integral_value(rounding=ROUND_CEILING)))
        return self.cfg.risk_management.leverage_default

    async def _opening_leverage(self, pos: Position, side: Side) -> int | None:
        """The leverage the orders that opened ``pos`` were placed with, when they all say the same (a person
        adding at another leverage leaves the exchange's figure as the only truth); None when unknown."""
        if pos.opened_ms is None:
            return None  # which fills opened it cannot be told
        entry_side = OrderSide.BUY if side is Side.LONG else OrderSide.SELL
        try:
            fills = await self._position_fills(pos.symbol, pos.opened_ms, side)
            seen: set[int] = set()
            for order_id in list(dict.fromkeys(f.order_id for f in fills if f.side is entry_side))[:5]:
                lev = (await self.client.order_by_id(order_id)).leverage
                if lev is None:
                    return None
                seen.add(lev)
        except ExchangeError as exc:
            log.warning("adopt.leverage_unknown", symbol=pos.symbol, error=str(exc))
            return None
        return seen.pop() if len(seen) == 1 else None

    async def _confirm_resize(self, p: Protected) -> None:
        """The follow-up of a resize announced as not yet confirmed: its stop and TP now cover the position."""
        if p.symbol in self._resize_unconfirmed:
            self._resize_unconfirmed.discard(p.symbol)
            self.bus.publish(
                ResizeConfirmed(
                    ts_ms=self.clock(),
                    symbol=p.symbol,
                    side=p.side.value,
                    lots=p.lots,
                    stop=p.stop,
                    take_profit=p.take_profit,
                )
            )

    async def _announce_resize(self, p: Protected, old_lots: int, *, covered: bool) -> None:
        """Tell the trader the position changed size and why, from the newest fills that make up the change: the
        drift line alone ("engine 179 lots, exchange 100") did not say that KuCoin auto-deleveraged 79 lots, nor
        that the stop now covers the 100 left. Fills the history does not list yet leave the cause ``unknown``.
        ``covered``: the stop and TP are confirmed on the exchange for the new size; when not, the message says
        they are being resized, a ``resize`` item makes the retry loop check again, and ResizeConfirmed follows."""
        if covered:
            self._resize_unconfirmed.discard(p.symbol)
        else:
            self._resize_unconfirmed.add(p.symbol)
            key = f"resize:{p.symbol}"
            if not any(i.key == key for i in await self.retry.due(2**62)):  # one already queued keeps its time
                due = self.clock() + RETRY_BASE_MS
                await self.retry.put("resize", key, {"symbol": p.symbol}, due, "stop or take-profit not yet resized")
        delta = p.lots - old_lots
        grew = delta > 0
        cause, avg = "unknown", None
        try:
            fills = await self._position_fills(p.symbol, p.opened_ms, p.side)  # not the other side's, in hedge mode
        except ExchangeError as exc:
            log.warning("resize.fills_unavailable", symbol=p.symbol, error=str(exc))
            fills = []
        made: list[Fill] = []
        for f in fills:  # newest first
            if sum(x.lots for x in made) >= abs(delta):
                break
            if (f.side is p.exit_side) is not grew:
                made.append(f)
        if made and sum(f.lots for f in made) >= abs(delta):
            avg = sum((f.price * f.lots for f in made), Decimal(0)) / sum(f.lots for f in made)
            kinds = {f.trade_type for f in made}
            if "liquid" in kinds:
                cause = "liquidation"
            elif "adl" in kinds:
                cause = "auto_deleverage"
            else:
                cause = "manual"
                with contextlib.suppress(ExchangeError):
                    o = await self.client.order_by_id(made[0].order_id)
                    if await self.coordinator.ours(o):
                        cause = "take_profit" if o.stop is p.tp_direction else "stop"
        self.bus.publish(
            PositionResized(
                ts_ms=self.clock(),
                symbol=p.symbol,
                side=p.side.value,
                old_lots=old_lots,
                new_lots=p.lots,
                cause=cause,
                price=avg,
                entry=p.entry,
                stop=p.stop,
                take_profit=p.take_profit,
                covered=covered,
            )
        )

    def _take_entry(self, m: Managed, entry: Decimal) -> None:
        """Lots added by hand: the position's entry is now the exchange's average of all of them. The rule's
        break-even and profit locks are measured from it (from the bot's own fill, a "profit lock" of a long doubled
        0.5 % higher sat under the average and closed at -9.17 USDT net). The stop and the TP keep their prices:
        ``tp_roi`` is restated for the new entry so that no TP extension is owed by the change alone."""
        p = m.protection
        if entry == p.entry:
            return
        log.warning("position.entry_averaged", symbol=p.symbol, old=str(p.entry), new=str(entry))
        p.entry = m.rule.entry = entry
        p.tp_roi = m.rule.tp_roi = gross_roi(p.side, entry, p.take_profit, p.leverage)

    async def _recheck_unlisted(self, open_stops: dict[str, Order], *ids: str | None) -> None:
        """A stop or TP the listing lacks is asked about by id before it is called missing: re-placing one that is
        in fact live (a listing that came back short) would leave two, one of them unmanaged. Added to
        ``open_stops`` when live; when the exchange cannot say, it stays missing (a second stop is the safe error)."""
        for oid in ids:
            if oid is None or oid in open_stops:
                continue
            try:
                o = await self.client.order_by_id(oid)
            except ExchangeError:
                continue
            if o.is_active and o.stop is not None and not o.stop_triggered:
                log.warning("stops.listing_missed_live_order", symbol=o.symbol, order_id=oid)
                open_stops[oid] = o

    async def _resize_protection(self, p: Protected, open_stops: dict[str, Order]) -> bool:
        """The stop and the TP must close exactly the position as it is now: after a partial exit or a person
        adding to or trimming it, each is replaced at its price with the current size (place, confirm, cancel).
        A stop smaller than the position leaves part of it unprotected; a larger one is trimmed by reduceOnly."""
        if p.replace_state != "STEADY":
            return False  # a replace on its way places the new stop with the current size; the next look checks
        moved = False
        stop = open_stops.get(p.stop_order_id or "")
        if stop is not None and stop.lots != p.lots:
            log.warning("stop.resize", symbol=p.symbol, order_lots=stop.lots, position_lots=p.lots)
            await self.coordinator.move_stop(p, p.stop, p.stop_reason)
            moved = True
        tp = open_stops.get(p.tp_order_id or "")
        if tp is not None and tp.lots != p.lots and p.replace_state == "STEADY":
            await self.coordinator.move_take_profit(p, p.take_profit, "resized")
            moved = True
        return moved

    async def _closed(self, symbol: str, m: Managed, *, reason: str | None = None) -> None:
        """The exchange closed the position (stop, TP or liquidation): account for it and clear leftovers.

        Claimed first, before any await: a reconciliation and a kill switch noticing the same close must not
        account for it twice.
        """
        if self.managed.get(symbol) is not m:
            return
        del self.managed[symbol]
        self.liquidation.forget(symbol)
        self._resize_unconfirmed.discard(symbol)  # never "confirmed" for the next position on the symbol
        self._told_lots.pop(symbol, None)
        self.coordinator.forget(symbol)
        p = m.protection
        p.closed = True  # a stop or TP move still on its way for it undoes itself and persists nothing
        exit_side = "sell" if p.side is Side.LONG else "buy"
        fills = await self._trade_fills(symbol, p.opened_ms, exit_side, p.side)
        closing = [f for f in fills if f.side.value == exit_side]
        spec = self.specs[symbol]
        # The trade is every lot it ever had: a TP that filled partly, or a person trimming or adding to it, closes
        # or opens lots on their own fills, and the engine's lot count is only what was left at the end.
        opening = [f for f in fills if f.side.value != exit_side]
        opened_lots = sum(f.lots for f in opening)
        entry = sum((f.price * f.lots for f in opening), Decimal(0)) / opened_lots if opened_lots else p.entry
        if closing:
            lots = sum(f.lots for f in closing)
            exit_price: Decimal = sum((f.price * f.lots for f in closing), Decimal(0)) / lots
            traded = min(lots, opened_lots) if opened_lots else lots  # a flip's sell also opened the other way
        else:
            exit_price, traded = p.stop, p.lots
        # The fills do not show how it ended (an ADL or a liquidation KuCoin has not listed yet): its closed-position
        # record does. Before, a full ADL at 2012.40 unlisted within the reads was booked at the stop as stop_loss.
        record = None if closing and sum(f.lots for f in closing) >= opened_lots else await self._closed_record(p)
        if record is not None:
            entry, exit_price = record.open_price, record.close_price
            read: Decimal | None = record.gross - record.trade_fee - record.pnl  # its pnl is net of fees and funding
        else:
            read = await self._funding_paid(symbol, p.side, p.opened_ms, None)
        funding = Decimal(0) if read is None else read  # unknown for now: booked when read (_book_owed_funding)
        if record is not None:
            pnl = TradePnl(
                gross=record.gross,
                fees=record.trade_fee,
                funding=funding,
                net=record.pnl,
                margin=record.open_price * spec.multiplier * max(opened_lots, p.lots) / p.leverage,
            )
        elif closing and opening:
            pnl = _booked_pnl(p.side, opening, closing, spec.multiplier, p.leverage, funding)
        else:  # the fills cannot be read: estimated at the stop, taker fees on both legs (§10.3)
            pnl = trade_pnl(
                p.side,
                entry=entry,
                exit_price=exit_price,
                quantity=spec.base_quantity(traded),
                leverage=p.leverage,
                fee_in=self.cfg.fees.entry_fee_rate,
                fee_out=self.cfg.fees.exit_fee_rate,
                funding=funding,
            )
        roi = gross_roi(p.side, entry, exit_price, p.leverage)
        ended = [] if record is not None else _final_fills(closing)  # the record says what ended it
        if reason is None and record is not None and record.kind in ("liquid", "adl"):
            reason = "liquidation" if record.kind == "liquid" else "auto_deleverage"
        if reason is None and any(f.trade_type in ("liquid", "adl") for f in ended):
            reason = "liquidation" if any(f.trade_type == "liquid" for f in ended) else "auto_deleverage"
        if reason is None and closing and await self._closed_by_a_person(closing):
            reason = "manual"
        if reason is None and ended and await self._closed_by_a_losing_older_stop(p, m.rule, ended):
            reason = "stop_loss"
        if reason is None:
            reason = m.rule.exit_reason if roi < self.cfg.risk_management.take_profit_roi - 1 else "take_profit"
        for oid in await self._own_order_ids(p):
            with contextlib.suppress(ExchangeError):  # a stop that fails to go is swept by the next reconciliation
                await self.client.cancel_order(oid)
        await self.positions_repo.delete(symbol)
        closed_ms = self.clock()
        if read is None:  # persisted before the close is published: the owed read survives a restart
            # Read later, up to the close as the exchange stamped it or as the engine saw it, whichever is later
            # (a next trade's funding on the symbol is not this one's).
            await self._owe_funding(symbol, p, max([closed_ms, *(f.ts_ms for f in closing)]), closed_ms, pnl.net)
        self.risk.record_close(symbol, pnl.net, closed_ms)
        await self._equity_after_close(pnl.net)
        self.bus.publish(
            PositionClosed(
                ts_ms=closed_ms,
                symbol=symbol,
                side=p.side.value,
                exit_reason=reason,
                entry=entry,  # what the gross is computed from: with lots added by hand, not the bot's own fill
                exit=exit_price,
                gross=pnl.gross,
                fees=pnl.fees,
                funding=pnl.funding,
                net=pnl.net,
                funding_known=read is not None,
            )
        )

    async def _closed_record(self, p: Protected) -> ClosedPosition | None:
        """KuCoin's record of this position's close (``GET /api/v1/history-positions``): the newest of its side
        closed since it opened, or None when there is none yet or the history cannot be read (then the close is
        estimated, as before)."""
        try:
            records = await self.client.closed_positions(p.symbol, start_ms=p.opened_ms)
        except ExchangeError as exc:
            log.warning("close.history_unavailable", symbol=p.symbol, error=str(exc))
            return None
        want = "LONG" if p.side is Side.LONG else "SHORT"
        found = next((r for r in records if r.side == want and r.close_ms >= p.opened_ms), None)
        if found is not None:
            log.warning("close.booked_from_history", symbol=p.symbol, type=found.kind, close=str(found.close_price))
        return found

    async def _trade_fills(self, symbol: str, since_ms: int, exit_side: str, side: Side) -> list[Fill]:
        """The fills of a trade that just closed. Reference §4.5: the fills history is "not real-time", so a close
        looked at at once (the kill switch, the position push) may not be listed yet; read again, a few times,
        until the closing fills cover the opened lots. Before, such a close was booked at the stop price with the
        taker estimate (a kill switch at 2010.70 booked gross −19.89 USDT instead of +18.44)."""
        fills: list[Fill] = []
        sides: dict[str, str] = {}  # order id -> its positionSide, asked once per order
        for wait in (*CLOSE_FILLS_RETRY_S, None):
            fills = await self._position_fills(symbol, since_ms, side, sides)
            closed = sum(f.lots for f in fills if f.side.value == exit_side)
            opened = sum(f.lots for f in fills if f.side.value != exit_side)
            if closed and closed >= opened:
                return fills
            if wait is not None:
                await asyncio.sleep(wait)
        log.warning("close.fills_incomplete", symbol=symbol, fills=len(fills))
        return fills

    async def _position_fills(
        self, symbol: str, since_ms: int, side: Side, sides: dict[str, str] | None = None
    ) -> list[Fill]:
        """The symbol's fills since ``since_ms`` that belong to the ``side`` position (newest first): in hedge mode
        the other side's are left out. ``sides`` caches order id -> positionSide across reads."""
        fills = [f for f in await self.client.fills(symbol=symbol, start_ms=since_ms) if f.ts_ms >= since_ms]
        if self.options.hedge:
            fills = await self._fills_of_side(fills, side, {} if sides is None else sides)
        return fills

    async def _fills_of_side(self, fills: list[Fill], side: Side, sides: dict[str, str]) -> list[Fill]:
        """Hedge mode: only the fills of this side's position. A symbol's fills hold both sides' (a trade by hand
        on the other side in the same window was booked into this close: gross −20.92 USDT instead of the −21.50
        the LONG side's fills made). A fill's side is its ``positionSide`` when it carries one (the fills reference
        lists none), else its order's; a fill whose side cannot be learnt is left out, and logged."""
        want = "LONG" if side is Side.LONG else "SHORT"
        out = []
        for f in fills:
            position_side = f.position_side or sides.get(f.order_id)
            if position_side is None:
                try:
                    position_side = (await self.client.order_by_id(f.order_id)).position_side
                except ExchangeError as exc:
                    log.warning("close.fill_side_unknown", symbol=f.symbol, order_id=f.order_id, error=str(exc))
                    continue  # asked again at the next read
                if position_side is None:
                    log.warning("close.fill_side_unknown", symbol=f.symbol, order_id=f.order_id, error="no side")
                    continue
                sides[f.order_id] = position_side
            if position_side == want:
                out.append(f)
        return out

    async def _closed_by_a_losing_older_stop(self, p: Protected, rule: StopManager, ended: list[Fill]) -> bool:
        """The last lots were closed by a stop of ours other than the one the rule holds, at a loss: a stop move
        was on its way (the rule already at its new level) when the price ran through the stop it was replacing.
        Before, such a close at 1985 (under the initial stop at 1989.29, net negative) was booked as the move's
        ``trailing_stop``. An order that cannot be looked up leaves the rule's label."""
        try:
            o = await self.client.order_by_id(ended[0].order_id)
        except ExchangeError:
            return False
        if o.stop is not p.stop_direction or o.stop_price is None or o.stop_price == rule.stop:
            return False
        return gross_roi(p.side, p.entry, o.stop_price, p.leverage) <= 0 and await self.coordinator.ours(o)

    async def _closed_by_a_person(self, closing: list[Fill]) -> bool:
        """Every closing fill came from an order that is not the engine's (the trader closed it on KuCoin's site):
        reported as ``manual``, not as the stop the rule last held (before: "stop_loss" for a person's close at a
        profit). When an order cannot be looked up it counts as the engine's, and the rule's label stands."""
        for order_id in sorted({f.order_id for f in closing})[:10]:
            try:
                if await self.coordinator.ours(await self.client.order_by_id(order_id)):
                    return False
            except ExchangeError:
                return False
        return True

    async def _equity_after_close(self, net: Decimal) -> None:
        """The equity after a close is the exchange's again. Adding the trade's net to the last marked equity counted
        the trade twice when that mark already held the position's unrealised PnL (before: a session whose wallet
        was 10,086.88 USDT showed 10,102.00, and the next entry was sized on it). Only when the exchange cannot
        answer is the net added (the next reconciliation marks it again)."""
        try:
            await self.mark_to_market()
        except ExchangeError as exc:
            log.warning("equity.mark_after_close_failed", error=str(exc))
            self.risk.equity += net

    async def _own_order_ids(self, p: Protected) -> list[str]:
        """Every stop and TP order of this position that may still be live: its stop and TP, and a replace's
        other stop (the old one a failed cancel left, or a new one placed but not yet confirmed). Left on a flat
        symbol, a reduce-only stop would close part of the next position there at a stale price."""
        ids = [oid for oid in (p.stop_order_id, p.tp_order_id) if oid]
        if p.replace_state in ("CANCELLING_OLD", "CONFIRMED_NEW") and p.pending_client_oid:
            ids.append(p.pending_client_oid)  # in these states it holds the old stop's order id
        elif p.replace_state == "PLACING_NEW" and p.pending_client_oid:
            with contextlib.suppress(ExchangeError):  # never placed, or cannot tell now: the sweep covers it
                ids.append((await self.client.order_by_client_oid(p.pending_client_oid)).id)
        return ids

    async def _spec_for(self, symbol: str) -> bool:
        """A position on a symbol the bot does not trade (opened by hand) is protected all the same: its contract
        spec is fetched on demand. (No mark stream is subscribed for it, so its stop stays where it is placed.)"""
        if symbol in self.specs:
            return True
        try:
            self.specs[symbol] = contract_spec_from_payload(await self.client.contract(symbol))
        except (ExchangeError, ValueError, KeyError) as exc:
            log.error("contract.spec_unavailable", symbol=symbol, error=str(exc))
            return False
        log.warning("contract.spec_fetched_for_adoption", symbol=symbol)
        return True

    async def _report_foreign(self, orders: Any) -> None:
        """Orders that are not ours (the trader's own, placed on KuCoin's site) are never touched: each is reported
        once (log and Telegram) so the trader knows the engine sees it and leaves it alone."""
        for o in orders:
            if o.id in self._foreign_seen or await self.coordinator.ours(o):
                continue
            self._foreign_seen.add(o.id)
            what = f"{o.side.value} {o.lots} lots" + (f" stop {o.stop.value} {o.stop_price}" if o.stop else "")
            log.warning("orders.foreign_left_alone", symbol=o.symbol, order_id=o.id, order=what)
            self.bus.publish(
                ForeignOrderSeen(
                    ts_ms=self.clock(), symbol=o.symbol, order_id=o.id, detail=what + ", reduce-only" * o.reduce_only
                )
            )

    async def _sweep_orphan_stops(self, live: set[str]) -> list[str]:
        """Stop orders of ours on a symbol with no position: cancel them (a reduce-only stop left there would close
        part of the next position at a stale price). A person's orders are left alone and reported once."""
        swept: list[str] = []
        for o in await self.client.open_stop_orders():
            if o.symbol in live or o.symbol in self.managed:
                continue
            if not await self.coordinator.ours(o):
                await self._report_foreign([o])
                continue
            try:
                await self.client.cancel_order(o.id)
            except ExchangeError as exc:
                log.error("stop.orphan_cancel_failed", symbol=o.symbol, order_id=o.id, error=str(exc))
                continue
            swept.append(f"{o.symbol}: stop {o.id} of a closed position cancelled")
        return swept

    async def _funding_paid(self, symbol: str, side: Side, since_ms: int, until_ms: int | None) -> Decimal | None:
        """Funding paid while the position was open, from ``since_ms`` (up to ``until_ms`` for a read after the
        close; the exchange reports received as positive), or None when the history cannot be read: the client has
        already retried it as every read, and a 0 booked for it was silent (0.00 booked while the exchange charged
        0.36 USDT). In hedge mode only this side's records: the other side's position is funded on the same symbol."""
        want = "LONG" if side is Side.LONG else "SHORT"
        try:
            records = await self.client.funding_history(symbol, start_ms=since_ms, end_ms=until_ms)
            return -sum(
                (
                    Decimal(str(r["funding"]))
                    for r in records
                    if since_ms <= int(r["timePoint"]) <= (until_ms if until_ms is not None else 2**62)
                    and (not self.options.hedge or _funding_side(r) in (want, None))
                ),
                Decimal(0),
            )
        except (ExchangeError, KeyError, TypeError, ValueError, ArithmeticError) as exc:
            log.warning("funding.history_failed", symbol=symbol, error=f"{type(exc).__name__}: {exc}")
            return None

    async def _owe_funding(self, symbol: str, p: Protected, until_ms: int, closed_ms: int, net: Decimal) -> None:
        """A close booked without its funding: the read is owed, persisted in the retry queue (one item per
        trade), and worked by the retry loop until the exchange answers."""
        payload = {
            "symbol": symbol,
            "side": p.side.value,
            "opened_ms": p.opened_ms,
            "until_ms": until_ms,
            "closed_ms": closed_ms,
            "net": str(net),
        }
        due = closed_ms + RETRY_BASE_MS
        await self.retry.put("funding", f"funding:{symbol}:{closed_ms}", payload, due, "funding history unreadable")

    async def _book_owed_funding(self, key: str, payload: dict[str, Any], attempts: int) -> bool:
        """Read the funding of a close booked without it; once read, today's realised PnL (and the loss streak and
        cooldown) are corrected and a FundingBooked carries it to storage, /pnl, the daily summary and the chat.
        Not yet readable: asked again after a growing wait. True when booked."""
        symbol, side, closed_ms = str(payload["symbol"]), Side(payload["side"]), int(payload["closed_ms"])
        funding = await self._funding_paid(symbol, side, int(payload["opened_ms"]), int(payload["until_ms"]))
        if funding is None:
            delay = retry_delay_ms(attempts + 1, FUNDING_RETRY_CAP_MS)
            await self.retry.put("funding", key, payload, self.clock() + delay, "funding history unreadable")
            return False
        old_net = Decimal(str(payload["net"]))
        net = old_net - funding
        await self.retry.done(key)  # then corrected and published at once (no await between): never twice
        self.risk.correct_close(symbol, old_net, net, closed_ms, self.clock())
        self.bus.publish(
            FundingBooked(
                ts_ms=self.clock(), symbol=symbol, side=side.value, closed_ms=closed_ms, funding=funding, net=net
            )
        )
        log.info("funding.booked_late", symbol=symbol, funding=str(funding), net=str(net))
        return True

    async def recover(self) -> list[str]:
        """After a restart: reload managed positions, settle the pending intents the exchange can answer about (the
        rest go to the retry loop, never waited for), finish interrupted stop moves, reconcile with the exchange."""
        for row in await self.positions_repo.all():
            p = Protected.from_row(row)
            self.managed[p.symbol] = Managed(p, self._rule(p))
        for intent in await self.intents.pending():
            if not await self._settle_intent(intent):
                self.unsettled_intents.add(intent.client_oid)  # never waited for here: start-up goes on
        for m in list(self.managed.values()):
            await self.coordinator.resume(m.protection)
            await self._catch_up_take_profit(m.protection)  # an extension owed when the process stopped
        for item in await self.retry.due(2**62):
            if item.kind == TP_CANCEL:  # a take-profit move saved, the TP it replaced not yet cancelled
                await self._cancel_replaced_take_profit(item)
        for intent in await self.intents.pending():
            if (
                intent.purpose in ("stop", "take_profit")
                and intent.client_oid not in self.unsettled_intents  # its fate unknown: not called a duplicate
                and not any(intent.client_oid == m.protection.pending_client_oid for m in self.managed.values())
            ):
                # Live, and neither protection nor a replace took it over: a duplicate. Settled, so that the
                # reconciliation below no longer takes it for one on its way, and cancels it.
                await self.intents.mark(intent.client_oid, "acked", detail="live after restart, not taken over")
        return await self.sync_positions()

    async def _settle_intent(self, intent: Intent) -> bool:
        """Settle an intent a stopped process left pending, on the exchange's word about its clientOid; True when
        it answered. Only a definite answer settles it: unknown (100004) means never placed, found means adopted
        as it is. A timeout, 5xx, rate limit or lost connection says nothing about an order that may well have
        landed: calling it failed made protect() place a second stop beside it. Such an intent stays pending
        (protect() asks about it before placing another) and the retry loop asks again."""
        try:
            known = await self.client.order_by_client_oid(intent.client_oid)
        except OrderNotFoundError:
            await self.intents.mark(intent.client_oid, "failed", detail="unknown to the exchange after restart")
            return True
        except ExchangeError as exc:
            log.warning(
                "intent.unsettled",
                client_oid=intent.client_oid,
                symbol=intent.symbol,
                purpose=intent.purpose,
                error=str(exc),
            )
            return False
        if intent.purpose in ("stop", "take_profit") and known.is_active:
            return True  # a live stop or TP nobody has heard back about: protect() takes it over, not doubles it
        await self.intents.mark(intent.client_oid, "done", known.id, "found on the exchange after restart")
        return True

    async def _settle_unsettled(self) -> None:
        """Ask again about the intents the restart could not settle (see ``_settle_intent``)."""
        for client_oid in sorted(self.unsettled_intents):
            intent = await self.intents.get(client_oid)
            if intent is None or intent.status != "pending" or await self._settle_intent(intent):
                self.unsettled_intents.discard(client_oid)  # settled here, or meanwhile by protect()

    async def retry_forever(self, interval_s: float = RETRY_INTERVAL_S) -> None:
        """Work the retry queue every ``interval_s``. Run only by the reconciliation, a stop placement that failed
        right after an entry waited up to RECONCILE_INTERVAL_S (30 s) with the position bare, whatever the
        queue's backoff said; now it is tried again as soon as its backoff is over."""
        while True:
            try:
                await self.run_retries()
            except asyncio.CancelledError:
                raise
            except Exception:  # the loop must outlive any one failure: log it and go on
                log.exception("retry.loop_failed")
            await asyncio.sleep(interval_s)

    async def run_retries(self) -> int:
        """Work the persisted retry queue, after asking again about the intents the restart could not settle;
        returns how many queue items ran. One pass at a time (the retry loop; tests call it too)."""
        async with self._retrying:
            return await self._run_retries()

    async def _run_retries(self) -> int:
        await self._settle_unsettled()
        items = await self.retry.due(self.clock())
        for item in items:
            if item.kind == "funding":  # a closed trade's funding, not a position's protection
                try:
                    await self._book_owed_funding(item.key, item.payload, item.attempts)
                except (KeyError, ValueError, TypeError, ArithmeticError) as exc:  # never blocks the queue behind it
                    log.error("funding.owed_item_unreadable", key=item.key, error=f"{type(exc).__name__}: {exc}")
                    await self.retry.done(item.key)
                continue
            if item.kind == TP_CANCEL:
                await self._cancel_replaced_take_profit(item)
                continue
            m = self.managed.get(str(item.payload.get("symbol")))
            if m is None:
                await self.retry.done(item.key)
                continue
            p = m.protection
            await self.coordinator.resume(p)
            tp_done = await self._catch_up_take_profit(p)
            steady = p.replace_state == "STEADY" and p.stop_order_id and p.tp_order_id and tp_done
            # A take-profit item may be a failed resize, not only an extension (which _catch_up_take_profit places):
            # before, the TP kept its old size until the next reconciliation (179 lots over a position of 100).
            if item.kind in ("resize", "take_profit") and not (steady and await self._resized(p)):
                # Not yet (the move is still on its way, or failing): again after the queue's backoff, not every
                # second (each look resumes the move too, which would skip the move's own backoff).
                await self.coordinator.schedule(p.symbol, item.kind, "the stop or take-profit is not resized yet")
                continue
            if steady:
                await self.retry.done(item.key)
                if item.kind in ("resize", "take_profit"):  # _resized saw both listed at the position's size
                    await self._confirm_resize(p)
        return len(items)

    async def _cancel_replaced_take_profit(self, item: RetryItem) -> None:
        """A ``tp_cancel`` item: the TP a take-profit move replaced goes (its position closed meanwhile: the orphan
        sweep takes what is left); the exchange failing the cancel tries again after the queue's backoff."""
        m = self.managed.get(str(item.payload.get("symbol")))
        if m is None:
            await self.retry.done(item.key)
            return
        try:
            await self.coordinator.cancel_replaced_take_profit(m.protection, str(item.payload.get("order_id")))
        except ExchangeError as exc:
            log.warning("take_profit.old_cancel_failed", symbol=m.protection.symbol, error=str(exc))
            due = self.clock() + retry_delay_ms(item.attempts + 1)
            await self.retry.put(item.kind, item.key, item.payload, due, str(exc))

    async def _resized(self, p: Protected) -> bool:
        """A resize owed since the position changed size mid stop move (``resize`` items), or whose TP placement
        failed (``take_profit`` items): the stop and TP as listed now are replaced for the position's lots where
        they differ. True when the exchange lists both at the position's size (nothing more is owed)."""
        try:
            open_stops = {o.id: o for o in await self.client.open_stop_orders(p.symbol)}
            if await self._resize_protection(p, open_stops):
                open_stops = {o.id: o for o in await self.client.open_stop_orders(p.symbol)}  # as they are now
        except ExchangeError as exc:
            log.warning("stop.resize_listing_failed", symbol=p.symbol, error=str(exc))
            return False
        return p.replace_state == "STEADY" and _covers(p, open_stops)

    async def _catch_up_take_profit(self, p: Protected) -> bool:
        """A TP extension that failed is owed: the rule already counts it (``tp_roi``, persisted), so it would never
        propose it again. Place it now; True when the TP on the exchange is where the rule wants it."""
        if p.replace_state != "STEADY" or p.tp_order_id is None:
            return True
        wanted = round_take_profit(
            price_at_roi(p.side, p.entry, p.tp_roi, p.leverage), p.side, self.specs[p.symbol].tick_size
        )
        if not p.side.further(wanted, p.take_profit):
            return True
        await self.coordinator.move_take_profit(p, wanted)
        return p.take_profit == wanted

    # ------------------------------------------------------------------ controls

    def set_paused(self, paused: bool, by: str = "engine") -> None:
        self.paused = paused
        self.bus.publish(ModeChanged(ts_ms=self.clock(), setting="paused", value=str(paused).lower(), by=by))

    def latched_halts(self) -> list[str]:
        """The halts only a person can lift (§9.4 circuit breaker, the kill switch's HALTED), in words."""
        out = []
        r = self.risk
        if r.circuit_breaker:
            out.append(
                f"circuit breaker: drawdown {r.drawdown_pct:.2f} % from today's peak {r.peak_equity:,.2f} USDT "
                f"(equity {r.equity:,.2f} USDT)"
            )
        if self.state is TradingState.HALTED:
            out.append("trading HALTED by the kill switch")
        return out

    def reset_halts(self, by: str) -> list[str]:
        """A person lifts the latched halts: the breaker measures the drawdown afresh from the equity now (§9.4
        "until a manual reset"), and HALTED steps back through REDUCING to ACTIVE. The daily loss limit, the loss
        streak and the cooldowns are not latches and stay as they are. Returns what was lifted."""
        lifted = self.latched_halts()
        if self.risk.circuit_breaker:
            self.risk.reset_circuit_breaker()
            self.bus.publish(ModeChanged(ts_ms=self.clock(), setting="circuit_breaker", value="reset", by=by))
        if self.state is TradingState.HALTED:
            self.set_state(TradingState.REDUCING, f"halt reset by {by}")
            self.set_state(TradingState.ACTIVE, f"halt reset by {by}")
        return lifted

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
        One request cancels every untriggered stop; plain orders are cancelled only where some are open.

        The positions are listed before anything is cancelled: if the exchange cannot show them, nothing has been
        touched and the error says so. A position whose close fails gets its stop and take-profit back at once
        (and keeps them through the second sweep): a failure midway never leaves a position naked."""
        positions = [p for p in await self.client.positions() if p.is_open]
        cancelled = await self._cancel_every_stop()
        closed: list[str] = []
        failed: set[str] = set()
        for _ in range(3):  # an order placed meanwhile (or beyond the listing's bound): list again until none is left
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
        try:  # again: a resting order may have filled before its cancel
            positions = [p for p in await self.client.positions() if p.is_open]
        except ExchangeError as exc:
            log.error("kill.list_positions_failed", error=str(exc))  # close what the first listing showed
        for pos in positions:
            side = OrderSide.SELL if _side_of(pos) is Side.LONG else OrderSide.BUY
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
            except PositionEmptyError:
                closed.append(pos.symbol)  # flat already (a stop went off meanwhile): that is the goal
            except ExchangeError as exc:
                failed.add(pos.symbol)
                log.error("kill.close_failed", symbol=pos.symbol, error=str(exc))
        if failed:  # still open: protected again, and kept out of the second sweep
            for symbol in sorted(failed):
                m = self.managed.get(symbol)
                if m is not None:
                    m.protection.stop_order_id = m.protection.tp_order_id = None
                    await self.coordinator.protect(m.protection)
            cancelled += await self._cancel_stops_except(failed)
        else:
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

    async def _cancel_stops_except(self, keep: set[str]) -> int:
        """Every untriggered stop order except those of ``keep`` (positions still open), one by one."""
        cancelled = 0
        try:
            stops = await self.client.open_stop_orders()
        except ExchangeError as exc:
            log.error("kill.list_stops_failed", error=str(exc))
            return 0
        for o in stops:
            if o.symbol in keep:
                continue
            try:
                await self.client.cancel_order(o.id)
                cancelled += 1
            except ExchangeError as exc:
                log.error("kill.cancel_stop_failed", symbol=o.symbol, order_id=o.id, error=str(exc))
        return cancelled

    async def _cancel_every_stop(self) -> int:
        """Every untriggered stop order on the account, in one request (no symbol); how many were cancelled."""
        try:
            return len(await self.client.cancel_all_stop_orders())
        except ExchangeError as exc:
            log.error("kill.cancel_stops_failed", error=str(exc))
            return 0


def _covers(p: Protected, open_stops: dict[str, Order]) -> bool:
    """The stop and the TP of ``p`` are both listed live for exactly the position's lots."""
    return all(
        oid is not None and oid in open_stops and open_stops[oid].lots == p.lots
        for oid in (p.stop_order_id, p.tp_order_id)
    )


def _booked_pnl(
    side: Side, opening: list[Fill], closing: list[Fill], multiplier: Decimal, leverage: int, funding: Decimal
) -> TradePnl:
    """The trade as the exchange booked it: gross from the fills' values (no averaged price, so no rounding), the
    fees the exchange charged on them (a maker fill, a VIP rate: the taker estimate differed from the wallet),
    the funding settled. A flip's fill also opened lots the other way: each leg counts for this trade's lots."""
    opened, closed = sum(f.lots for f in opening), sum(f.lots for f in closing)
    traded = min(opened, closed)
    entry_value = multiplier * sum((f.price * f.lots for f in opening), Decimal(0)) * traded / opened
    exit_value = multiplier * sum((f.price * f.lots for f in closing), Decimal(0)) * traded / closed
    fees = sum((f.fee for f in opening), Decimal(0)) * traded / opened
    fees += sum((f.fee for f in closing), Decimal(0)) * traded / closed
    gross = side.sign * (exit_value - entry_value)
    return TradePnl(gross=gross, fees=fees, funding=funding, net=gross - fees - funding, margin=entry_value / leverage)


def _funding_side(record: dict[str, Any]) -> str | None:
    """The position side a funding record settled (reference §4.6): its ``context``'s positionSide, else the sign
    of its positionQty (a short's is negative); None when neither says."""
    with contextlib.suppress(ValueError, TypeError, AttributeError):
        side = json.loads(str(record.get("context") or "{}")).get("positionSide")
        if side in ("LONG", "SHORT"):
            return str(side)
    qty = int(record.get("positionQty") or 0)
    return "LONG" if qty > 0 else "SHORT" if qty < 0 else None


def _final_fills(closing: list[Fill]) -> list[Fill]:
    """The fills of the order that closed the position last: what ended the trade. Earlier closing fills (KuCoin
    auto-deleveraging or partly liquidating some lots, a person trimming it) did not end it: before, a trade of
    which 79 lots were auto-deleveraged and whose stop closed the other 100 was booked as ``auto_deleverage``."""
    if not closing:
        return []
    last = max(closing, key=lambda f: (f.ts_ms, int(f.trade_id) if f.trade_id.isdigit() else 0))
    return [f for f in closing if f.order_id == last.order_id]


def _side_of(pos: Position) -> Side:
    """The side of an exchange position: its hedge-mode positionSide, else the sign of its size."""
    if pos.position_side in ("LONG", "SHORT"):
        return Side.LONG if pos.position_side == "LONG" else Side.SHORT
    return Side.LONG if pos.lots > 0 else Side.SHORT


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
