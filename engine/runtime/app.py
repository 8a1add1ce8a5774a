"""Wire everything for one run: settings → exchange (simulator in paper mode) → storage → bus → engine →
streams → scheduler → HTTP. ``python -m engine.runtime`` calls ``run()``."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any, cast

import aiohttp
import structlog
from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from engine.config.errors import ConfigError
from engine.config.settings import Settings
from engine.config.strategy import StrategyConfig
from engine.events import (
    DriftCleared,
    DriftDetected,
    Event,
    EventBus,
    HealthChanged,
    SequencedSubscriber,
    StreamReconnected,
)
from engine.heap import settle_long_lived
from engine.indicators import RECOMMENDED_WARMUP_CANDLES
from engine.logging import Redactor
from engine.marketdata.candle_files import CandleFileError, load_candles
from engine.marketdata.klines import closed_candles
from engine.models import timeframe_ms
from engine.risk.contract import specs_from_payloads
from engine.risk.limits import DAY_MS
from engine.runtime.chaos import crash_point
from engine.runtime.contracts import CONTRACT_CHECK_S, ContractWatch
from engine.runtime.daily import summarize_day, summarized_day
from engine.runtime.engine import EngineOptions, TradingEngine
from engine.runtime.http import Health, Metrics, build_app, http_runner
from engine.runtime.lanes import Lanes, position_push_changes_position
from engine.runtime.trading_state import TradingState
from engine.scoring.compile import compile_strategy_core
from exchange.errors import ExchangeError, PermissionRefusedError
from exchange.rest import KucoinFuturesClient
from exchange.signing import Credentials
from exchange.ws import CandleCloser, MessageHandler, StreamGroup, StreamMessage
from storage.db import Database
from storage.journal import EventJournal, journal_path_for
from storage.repos import Approvals, EventLog, Intents, Positions, RetryQueue, TelegramCursors

log = structlog.get_logger(__name__)
ROOT = Path(__file__).resolve().parents[2]
# Paper mode replays recorded candles: the project's shared data when it is there, else what fetch-candles wrote.
REPLAY_CANDIDATES = (ROOT.parent / "shared" / "data" / "kucoin-futures", ROOT / "data" / "candles")


def default_replay_dir() -> Path:
    return next((d for d in REPLAY_CANDIDATES if d.is_dir()), REPLAY_CANDIDATES[-1])


DECISION_RETENTION_DAYS = 7  # per-bar decision records kept (542 symbols: ~88 MB a day); trades are kept for good
RECORD_RETENTION_DAYS = 30  # finished approval cards and the order intents of finished orders
REPLAY_SETTLE_LIMIT_S = 5.0  # the longest a --speed max replay waits for the bot at one step
REPLAY_LOST_AFTER_S = 0.5  # pushes not read this long while the bot idles went down with a dropped connection
PAPER_CREDS = Credentials("paper-key", "paper-secret-local-only", "paper-pass")  # the in-process simulator's


@dataclass
class RunOptions:
    replay_dir: Path | None = None
    speed: str = "60"
    arm_live: bool = False


class ConsoleNotifier:
    """Until Telegram is configured, events go to the log, concisely (a passing signal in one line)."""

    async def __call__(self, event: Event) -> None:
        if event.kind == "signal_evaluated":
            d: dict[str, Any] = getattr(event, "decision", {})
            if d.get("passed"):
                log.info(
                    "signal",
                    symbol=d.get("symbol"),
                    direction=d.get("direction"),
                    score=round(float(d.get("final_score", 0)), 2),
                    confidence=d.get("confidence"),
                    shadow_score=(d.get("micro") or {}).get("shadow_score"),
                )
            return
        log.info(event.kind, **{k: v for k, v in event.to_dict().items() if k != "kind"})


class MarketClock:
    """In an accelerated replay, cooldowns, debounces and day rolls follow the candles' time, not the wall clock."""

    def __init__(self) -> None:
        self.now_ms = 0

    def __call__(self) -> int:
        return self.now_ms or int(time.time() * 1000)


class ScheduledJobs:
    """The scheduler's coroutine jobs (reconciliation, daily summary, pruning), tracked so a stop lets a run in
    flight finish before the database closes. APScheduler's own shutdown cancels them wherever they are (its
    ``wait=True`` does nothing under asyncio) and logs the ``CancelledError`` as "Job raised an exception" with a
    traceback: the soak failed once on a reconciliation cut short mid-query (``refresh_gauges``) by a clean stop."""

    def __init__(self) -> None:
        self.scheduler = AsyncIOScheduler(timezone="UTC")
        self.grace_s = 10.0  # how long a stop waits for a run in flight before cutting it short
        self._running: set[asyncio.Task[Any]] = set()
        self._stopping = False

    def add(self, work: Callable[[], Awaitable[None]], trigger: str, job_id: str, **options: Any) -> None:
        async def run() -> None:
            task = asyncio.current_task()  # the scheduler's task for this run (never None inside one)
            if task is not None:
                self._running.add(task)
            try:
                await work()
            except asyncio.CancelledError:
                if not self._stopping:
                    raise
                # cut short by the stop (held past grace_s): it is a periodic look, the next start runs it again
                log.warning("job.cut_short", job=job_id, detail=f"still running {self.grace_s:g} s into the stop")
            finally:
                if task is not None:
                    self._running.discard(task)

        self.scheduler.add_job(run, trigger, id=job_id, name=job_id, **options)

    def start(self) -> None:
        self.scheduler.start()

    async def stop(self) -> None:
        """No new run starts; a run in flight gets ``grace_s`` to finish, then is cancelled and awaited; only then
        the scheduler shuts down (with nothing left for it to cancel)."""
        self.scheduler.pause()
        await asyncio.sleep(0)  # a run submitted just before the pause reaches run() and is counted
        running = set(self._running)
        if running:
            _, late = await asyncio.wait(running, timeout=self.grace_s)
            self._stopping = True
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        self.scheduler.shutdown(wait=False)


class Runtime:
    def __init__(self, settings: Settings, opts: RunOptions) -> None:
        self.settings = settings
        self.opts = opts
        self.cfg = settings.strategy()
        self.bus = EventBus(redact=Redactor(settings.secret_values()).text)  # never a secret in an event's text
        self.metrics = Metrics()
        self.health = Health()
        self.stop_event = asyncio.Event()
        self.sim: Any = None
        self.tasks: list[asyncio.Task[Any]] = []
        self.market_clock = MarketClock()
        self.engine: TradingEngine | None = None  # set once wired (read by the latency bench and diagnostics)
        self.stream: StreamGroup | None = None
        self.lanes: Lanes | None = None
        self._http: web.AppRunner | None = None
        self.reconcile: Callable[[], Awaitable[None]] | None = None  # set once running
        self.contracts: ContractWatch | None = None  # the contract-spec refresh, set once the engine is wired
        self._replay_lost = 0  # pushes of the replay that went to a dropped connection: never waited for again
        # The differences last announced, until a clean reconciliation: a drift that persists (a stop KuCoin will not
        # take while a contract is Paused) was announced again every 30 s.
        self._drift_told: list[str] | None = None
        self.jobs = ScheduledJobs()

    @property
    def http_port(self) -> int | None:
        """The port the HTTP side listens on once it does (with HTTP_PORT=0 the one the system chose), else None:
        in-process tests start on port 0 and read it here, since a port picked beforehand can be taken meanwhile."""
        if self._http is None:
            return None
        return next((int(a[1]) for a in self._http.addresses if isinstance(a, tuple)), None)

    async def _exchange(self) -> KucoinFuturesClient:
        s = self.settings
        if s.bot_mode == "paper" and s.paper_exchange_url:
            if s.kucoin_api_key is None or s.kucoin_api_secret is None or s.kucoin_api_passphrase is None:
                raise ConfigError("PAPER_EXCHANGE_URL needs the simulator's KUCOIN_API_KEY, _SECRET and _PASSPHRASE")
            creds = Credentials(
                s.kucoin_api_key.get_secret_value(),
                s.kucoin_api_secret.get_secret_value(),
                s.kucoin_api_passphrase.get_secret_value(),
                s.kucoin_key_version,
            )
            return KucoinFuturesClient(s.paper_exchange_url, creds)
        if s.bot_mode == "paper":
            from exchange.simulator import SimulatorConfig, SimulatorServer
            from exchange.simulator.replay import replay_files

            replay = self.opts.replay_dir or s.replay_dir or default_replay_dir()
            # The engine's day (loss limit, streak, drawdown peak) starts on the replay's first day, not today's:
            # started on today's, a replay of past candles never crossed a midnight and never reset them.
            try:
                if not (replay / "contracts.json").is_file():
                    raise CandleFileError(f"no contracts.json in {replay}")
                self.market_clock.now_ms = min(load_candles(replay, sym, "5min")[0].ts for sym in s.symbols)
            except (CandleFileError, IndexError) as exc:
                raise ConfigError(
                    f"paper replay: {exc or f'an empty candle file in {replay}'}; download candles with "
                    f"./start.sh fetch-candles --symbols {','.join(s.symbols)} --out data/candles"
                ) from None
            self.sim = SimulatorServer(
                SimulatorConfig(
                    api_key=PAPER_CREDS.key,
                    api_secret=PAPER_CREDS.secret,
                    api_passphrase=PAPER_CREDS.passphrase,
                    contracts_file=replay / "contracts.json",
                    symbols=tuple(s.symbols),
                    initial_balance=Decimal(str(s.paper_initial_balance)),
                )
            )
            # Its books (orders, fills, positions) on the replay's clock, as its funding instants and the engine are:
            # stamped with the wall clock, every trade opened "after" the replayed funding it paid, so the engine
            # booked 0 funding while the simulator charged it (the soak: the trades' sum 1.41 USDT off the books).
            self.sim.state.clock = self.market_clock
            await self.sim.start()
            self._replay = replay_files
            self._replay_dir = replay
            return KucoinFuturesClient(self.sim.rest_url, PAPER_CREDS)
        if s.kucoin_api_key is None or s.kucoin_api_secret is None or s.kucoin_api_passphrase is None:
            raise ConfigError("shadow and live modes need KUCOIN_API_KEY, KUCOIN_API_SECRET, KUCOIN_API_PASSPHRASE")
        creds = Credentials(
            s.kucoin_api_key.get_secret_value(),
            s.kucoin_api_secret.get_secret_value(),
            s.kucoin_api_passphrase.get_secret_value(),
            s.kucoin_key_version,
        )
        client = KucoinFuturesClient(s.kucoin_rest_url, creds, spot_base_url=s.kucoin_spot_rest_url)
        try:
            await client.sync_time()
            await client.check_key_permissions()  # refuses a key that can withdraw or transfer
        except PermissionRefusedError as exc:
            await client.close()
            raise ConfigError(f"refusing to start: {exc}") from None
        except (ExchangeError, aiohttp.ClientError, OSError) as exc:
            await client.close()  # one line, not a traceback: a wrong URL, no network, a bad key or passphrase
            # A SystemExit message goes to stderr as it is, past the log redactor: an answer can echo the key.
            answer = Redactor(s.secret_values()).text(f"{type(exc).__name__}: {exc}")
            raise SystemExit(f"error: cannot start: KuCoin answered {answer}") from None
        return client

    def _drifted(self, engine: TradingEngine, found: list[str]) -> None:
        """The engine and the exchange differed (``found``): announced, and new entries wait (REDUCING) until a
        scheduled reconciliation finds no difference (``drift_cleared``). Whoever found it: the start's recovery,
        a position push's reconciliation or the scheduled one. Before, only the scheduled one paused entries, while
        the message of the other two said "new entries paused" all the same (and, the push having already
        resized the stop, the scheduled one found nothing to pause for)."""
        self.health.reconciliation_clean = False
        if found != self._drift_told:
            self._drift_told = list(found)
            self.bus.publish(DriftDetected(ts_ms=_now(), differences=found))
        else:  # the trader has this very message; entries stay paused
            log.info("drift.unchanged", differences=found)
        if engine.state is TradingState.ACTIVE:
            engine.set_state(TradingState.REDUCING, "drift")

    def _background(self, work: Coroutine[Any, Any, object], name: str) -> None:
        """A task that runs beside the engine. One that dies of an exception (a replay over a corrupt file, say)
        used to leave the bot running without it, silently: now it is logged and raised as a health alarm."""

        def died(task: asyncio.Task[object]) -> None:
            if task.cancelled() or task.exception() is None:
                return
            exc = task.exception()
            log.error("task.died", task=name, error=f"{type(exc).__name__}: {exc}")
            self.bus.publish(HealthChanged(ts_ms=_now(), component=name, healthy=False, detail=f"stopped: {exc}"))

        task = asyncio.create_task(work, name=name)
        task.add_done_callback(died)
        self.tasks.append(task)

    async def _replay_settled(self) -> None:
        """A ``--speed max`` replay moves on once the bot has read every message pushed so far and handled it,
        including what the handling set off (fills, position changes): a fresh position gets its stop before the
        price moves again, as it would at real speed. Bounded, so a stuck handler cannot stall the replay.

        Pushes to a WebSocket connection that dropped never arrive: once it is back, they are written off when
        nothing has been read for REPLAY_LOST_AFTER_S while the bot idles. Waited for, every later step hit the 5 s
        limit (the soak saw a replay stuck at 21 bars in 45 s after its first dropped connection)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + REPLAY_SETTLE_LIMIT_S
        seen, since = -1, loop.time()
        while loop.time() < deadline:
            await asyncio.sleep(0)
            stream, lanes = self.stream, self.lanes
            if stream is None or lanes is None:
                continue
            if not all(conn.connected.is_set() for conn in stream.streams):
                seen = -1  # reconnecting: the market waits for it, as it would not run on 1,000 bars meanwhile
                continue
            self._replay_lost = min(self._replay_lost, self.sim.pushed - stream.received)  # late ones did arrive
            if stream.received + self._replay_lost < self.sim.pushed:
                if stream.received != seen:
                    seen, since = stream.received, loop.time()
                elif lanes.depth() == 0 and loop.time() - since >= REPLAY_LOST_AFTER_S:
                    self._replay_lost = self.sim.pushed - stream.received
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lanes.drain(), max(0.0, deadline - loop.time()))
            if stream.received + self._replay_lost >= self.sim.pushed and lanes.depth() == 0:
                return

    async def _warm_up(self, client: KucoinFuturesClient, engine: TradingEngine) -> None:
        """Every symbol's history from REST through the pipeline (live and shadow; the paper replay starts empty):
        1,000 closed confirmation candles, then 1,000 primary candles from the next confirmation boundary on."""
        step_ms = timeframe_ms(self.cfg.timeframes.primary)
        conf_ms = timeframe_ms(self.cfg.timeframes.confirmation)
        n = RECOMMENDED_WARMUP_CANDLES
        for sym in self.settings.symbols:
            end = _now() - _now() % step_ms - step_ms
            start = end - n * step_ms
            start -= start % conf_ms  # the aggregator needs whole buckets: begin on one
            conf_rows = await client.klines(sym, conf_ms // 60_000, start - n * conf_ms, start - conf_ms)
            rows = await client.klines(sym, step_ms // 60_000, start, end)
            applied = await engine.warm_up(sym, closed_candles(rows, sym), closed_candles(conf_rows, sym))
            log.info("warm_up", symbol=sym, candles=applied)

    async def run(self) -> int:
        s = self.settings
        label = {"paper": "PAPER", "shadow": "SHADOW", "live": "LIVE" if self.opts.arm_live else "LIVE (unarmed)"}
        log.info(
            "enygma.start",
            mode=label[s.bot_mode],
            symbols=s.symbols,
            control=s.control_mode,
            strict=self.cfg.strict_mode.enabled,
        )
        if not s.telegram_enabled:
            log.info("enygma.telegram", detail="TELEGRAM_BOT_TOKEN not set: notifications go to the console only")
        client = await self._exchange()
        async with client, Database(s.db_path) as db:
            try:
                return await self._run_with(client, db)
            finally:
                if self._http is not None:
                    await self._http.cleanup()
                    self._http = None

    async def _run_with(self, client: KucoinFuturesClient, db: Database) -> int:
        s = self.settings
        events = EventLog(db)
        journal = EventJournal(db, journal_path_for(s.db_path))
        try:
            recovered = await journal.open()
        except OSError as exc:
            raise SystemExit(f"cannot open the event journal {journal.path}: {exc.strerror or exc}") from None
        if recovered:
            log.warning("enygma.events_recovered", events=journal.recovered, detail="journaled before an unclean stop")
        earlier_runs_seq = journal.last_seq  # the events of the runs before this one end here

        def record(event: Event) -> int:
            seq = journal.record(event)
            crash_point("journaled:" + event.kind)  # (chaos tests) in the journal, no subscriber has seen it yet
            return seq

        self.bus.recorder = record
        self.health.storage_probe = journal.problem  # /health/ready turns red while events cannot be stored
        self.metrics.event_backlog.set_function(journal.backlog)
        self.metrics.events_lost.set_function(lambda: journal.lost)
        self.bus.subscribe("metrics", self.metrics.on_event)
        self.bus.subscribe("console", ConsoleNotifier())
        webhook = None
        webhook_ready: Gate | None = None
        if s.webhook_url:
            from engine.runtime.webhook import WebhookNotifier

            webhook = WebhookNotifier(s.webhook_url.get_secret_value(), db=db)
            await webhook.claim(earlier_runs_seq)
            webhook_ready = asyncio.get_running_loop().create_future()
            self.bus.subscribe_sequenced("webhook", _after(webhook_ready))
        else:
            from engine.runtime.webhook import forget_cursor

            await forget_cursor(db)  # this run's events are posted to nobody, now or at a later start
        # Telegram is subscribed before the bus starts, so the events of the start itself (a pause restored from
        # before the restart, a state change) are told too: they were published before the service existed, and
        # lost to Telegram. They wait in its queue until the catch-up of the runs before has queued its late ones.
        telegram_ready: Gate | None = None
        if s.telegram_enabled and s.telegram_bot_token is not None:
            telegram_ready = asyncio.get_running_loop().create_future()
            self.bus.subscribe_sequenced("telegram", _after(telegram_ready))
        await self.bus.start()
        specs, bad = specs_from_payloads(await client.contracts(), s.symbols)
        missing = [x for x in s.symbols if x not in specs]
        if missing:
            why = "".join(f" ({bad[x]})" for x in missing if x in bad)
            raise ConfigError(f"no contract spec for {', '.join(missing)}{why}: refusing to trade them")
        equity = (await client.account_overview()).equity
        step_ms = timeframe_ms(self.cfg.timeframes.primary)
        want_hedge = s.position_mode == "hedge"
        if (await client.position_mode() == 1) != want_hedge:
            await client.set_position_mode(hedge=want_hedge)  # refused by the exchange while positions are open
        margin_mode = EngineOptions.margin_mode  # what every order carries (a cross config is refused at start)
        for sym in s.symbols:  # a symbol in another mode refuses each of those orders (330005)
            await client.ensure_margin_mode(sym, margin_mode)
        engine = TradingEngine(
            self.cfg,
            client,
            specs,
            self.bus,
            Positions(db),
            Intents(db),
            RetryQueue(db),
            EngineOptions(
                mode=s.bot_mode,
                armed=self.opts.arm_live,
                control=s.control_mode,
                kill_switch_file=s.kill_switch_file,
                symbols=tuple(s.symbols),
                max_entry_slippage_pct=Decimal(str(s.max_entry_slippage_pct)),
                hedge=s.position_mode == "hedge",
            ),
            equity=equity,
            clock=self.market_clock if s.bot_mode == "paper" else None,
            approvals=Approvals(db),
            latency_observer=self.metrics.entry_latency.observe,
        )
        engine.options.approvals_ttl_ms = s.telegram_approval_ttl_s * 1000
        for sym, closed_status in engine.closed_contracts().items():
            # One line each: the symbol is watched (its position keeps its stop) but takes no new entry.
            log.warning(
                "contract.not_open",
                symbol=sym,
                status=closed_status,
                detail=f"contract {sym} is {closed_status}: monitored, positions kept protected, no new entries",
            )
        contracts = ContractWatch(engine, s.symbols)
        self.contracts = contracts
        from engine.runtime.control import dashboard_status, restore_switches
        from storage.repos import Settings as SavedSwitches

        await restore_switches(engine, SavedSwitches(db))
        engine.options.approval_max_drift_pct = Decimal(str(s.approval_max_price_drift_pct))
        telegram = None
        if telegram_ready is not None and s.telegram_bot_token is not None:
            from bot.app import BotConfig
            from bot.service import TelegramService
            from engine.runtime.control import EngineControl

            telegram = TelegramService(
                BotConfig(
                    token=s.telegram_bot_token.get_secret_value(),
                    allowed_user_ids=frozenset(s.telegram_allowed_user_ids),
                    chat_ids=tuple(s.telegram_chat_ids),
                    confirm_ttl_s=s.telegram_arm_ttl_s,
                    base_url=s.telegram_api_base_url,
                    secret_values=tuple(s.secret_values()),  # never in a chat message either
                ),
                EngineControl(engine, s, events, self.health, saved=SavedSwitches(db)),
                db,
                levels=dict(s.telegram_notify_levels),
            )
            await telegram.claim(earlier_runs_seq)  # what this run journals is owed to every chat from now on
            # read at each scrape: Telegram's silence is visible
            outbox, sender, service = telegram.outbox, telegram.sender, telegram
            self.metrics.telegram_dropped.set_function(lambda: outbox.dropped)
            self.metrics.telegram_unreachable.set_function(lambda: sender.unreachable_chats)
            self.metrics.telegram_unauthorized.set_function(lambda: service.unauthorized_updates)
            self._background(_start_telegram(telegram), "telegram-start")
        else:
            await TelegramCursors(db).forget()  # this run's events are nobody's messages, now or at a later start
        self.engine = engine

        def status() -> dict[str, Any]:
            return dashboard_status(engine, s.bot_mode)

        approver = engine.console_decide
        if s.http_host not in ("127.0.0.1", "localhost", "::1"):
            log.warning(
                "http.exposed", host=s.http_host, detail="metrics, health and dashboard reachable beyond loopback"
            )

        async def kill() -> str:
            report = await engine.kill_switch()
            return "flat" if report.flat else "not flat: " + "; ".join(report.leftovers)

        runner = http_runner(build_app(self.metrics, self.health, status, approver, kill))
        await runner.setup()
        self._http = runner  # cleaned up by run(), also when the start-up fails after this point
        await web.TCPSite(runner, s.http_host, s.http_port).start()
        # HTTP_PORT=0: the port the system chose, in the log (the chaos tests start the bot on one so no other
        # process can take a port picked for it beforehand: that start ended with exit 1, "address already in use")
        port = self.http_port or s.http_port
        url = f"http://{s.http_host}:{port}"
        # Up before the warm-up, which takes minutes over a large universe: /health/live answers (so systemd and the
        # health timer do not restart a bot that is only warming up), /health/ready says what is not ready yet, and
        # the kill switch works from the first minute.
        log.info("http.listening", http=url)
        await engine.restore_risk(events)  # a restart must not clear today's loss limit, streak or cooldowns
        await engine.restore_resizes(events)  # a resize said "not yet confirmed" still gets its follow-up
        await engine.check_exchange_status()  # in maintenance, entries wait from the first candle on
        # Positions first: one left by a crash between its entry and its stop gets the stop now, not after minutes
        # of warm-up; the warm-up only feeds indicators and never trades.
        diffs = await engine.recover()
        if diffs:
            self._drifted(engine, diffs)
        # After the positions are protected, beside the warm-up: the start never waits on them.
        if telegram is not None and telegram_ready is not None:
            work = telegram.catch_up(earlier_runs_seq, earlier_runs_seq)
            self._background(_catch_up(work, telegram_ready, telegram.notify, "telegram"), "telegram-catch-up")
        if webhook is not None and webhook_ready is not None:
            work = webhook.catch_up(earlier_runs_seq)
            self._background(_catch_up(work, webhook_ready, webhook, "webhook"), "webhook-catch-up")
        # The first start after an install compiles the strategy core (30-60 s; ./start.sh test, the unit's
        # ExecStartPre and the image build do it beforehand, leaving a load of about a second): in a thread, after
        # the positions are protected, with the HTTP side, the kill switch and Telegram answering meanwhile.
        seconds = await _in_daemon_thread(compile_strategy_core, self.cfg)
        log.info("strategy_core.ready", seconds=round(seconds, 1))
        await self._warm_up(client, engine)
        log.info("heap.settled", frozen_objects=settle_long_lived())
        closers = {sym: CandleCloser() for sym in s.symbols}
        sync_lock = asyncio.Lock()

        async def sync() -> None:
            """On a position push (and a stream reconnect). The exchange failing the listing is a warning: raised,
            it left the lane as lane.job_failed with a traceback; the scheduled reconciliation looks again."""
            try:
                async with sync_lock:
                    found = await engine.sync_positions()
            except ExchangeError as exc:
                log.warning("reconcile.failed", step="positions (push)", error=f"{type(exc).__name__}: {exc}")
                return
            if found:
                self._drifted(engine, found)

        lanes = Lanes()
        self.lanes = lanes
        self.metrics.lane_backlog.set_function(lanes.depth)  # read at each scrape: a growing backlog = too slow

        async def mark_tick(sym: str, mark: Decimal, received: float) -> None:
            if await engine.on_mark(sym, mark):
                self.metrics.stop_latency.observe(time.perf_counter() - received)

        def on_message(msg: StreamMessage) -> None:
            """Runs in the stream reader: cheap bookkeeping here, the work in the symbol's lane (engine.lanes)."""
            if msg.subject == "candle.stick":
                sym = str(msg.data.get("symbol"))
                closer = closers.get(sym)
                if closer is None:
                    log.warning("ws.unexpected_symbol", symbol=sym, topic=msg.topic)
                    return
                closed = closer.push(msg.data, msg.connection)
                if closed is not None:
                    self.health.last_candle_ms = _now()
                    self.market_clock.now_ms = closed.ts + step_ms
                    lanes.submit(sym, partial(engine.backfill_and_close, sym, closed))
            elif msg.subject == "mark.index.price":
                sym = msg.topic.split(":")[-1]
                if sym not in engine.managed:
                    return  # only positions care about the mark (an entry in flight has the next tick in ~1 s)
                mark = Decimal(str(msg.data["markPrice"]))
                lanes.submit(sym, partial(mark_tick, sym, mark, time.perf_counter()))
            elif msg.subject == "position.change" and position_push_changes_position(msg.data):
                lanes.submit_once("account", sync)  # a burst of pushes: one reconciliation, not one each

        async def reconnected() -> None:
            """A stream came back: positions are compared now, the contract specs at the next look (a pause or a
            tick change may have happened while the bot was away)."""
            contracts.stale()
            await sync()

        stream = await market_streams(client, s.symbols, self.cfg.timeframes.primary, on_message, reconnected)
        self.stream = stream
        self._background(stream.run(), "ws-stream")
        self._background(engine.retry_forever(), "retries")
        # Subscriptions are paced by KuCoin's uplink rate: ~31 s for a full connection of 280 topics.
        await asyncio.wait_for(stream.connected.wait(), timeout=30 + stream.subscribe_time_s())
        self.health.stream_connected = True
        self.health.last_signed_call_ms = client.last_signed_ok_ms
        if self.sim is not None:
            self._background(
                self._replay(
                    self.sim, self._replay_dir, tuple(s.symbols), self.opts.speed, settle=self._replay_settled
                ),
                "replay",
            )

        async def refresh_gauges() -> None:
            self.metrics.equity.set(float(engine.risk.equity))
            self.metrics.drawdown.set(float(engine.risk.drawdown_pct))
            self.metrics.open_positions.set(len(engine.managed))
            self.metrics.retry_depth.set(await engine.retry.depth())
            self.metrics.ws_reconnects.set(stream.stats.reconnects)

        async def reconcile() -> None:
            """Every RECONCILE_INTERVAL_S. The exchange failing one step (a 429 storm outlasting the client's
            retries) skips that step only: it raised out of the job before, as a traceback in the log, and the
            retries, approvals, status, marks and gauges after it waited for the next round."""
            was_clean = self.health.reconciliation_clean
            try:
                async with sync_lock:  # one reconciliation at a time (position pushes trigger them too)
                    found: list[str] | None = await engine.sync_positions()
            except ExchangeError as exc:
                log.warning("reconcile.failed", step="positions", error=f"{type(exc).__name__}: {exc}")
                found = None  # cannot tell: neither drift nor clean, the next round decides
            self.health.last_signed_call_ms = client.last_signed_ok_ms
            if found is not None:
                self.health.reconciliation_clean = not found
            if found:
                self._drifted(engine, found)
            elif found is not None and not was_clean:
                self._drift_told = None
                self.bus.publish(DriftCleared(ts_ms=_now()))
                if engine.state is TradingState.REDUCING:
                    engine.set_state(TradingState.ACTIVE, "state agrees again")
            # The retry queue is not among them: engine.retry_forever works it every second.
            steps: list[tuple[str, Callable[[], Awaitable[object]]]] = [
                ("approvals", engine.expire_approvals),
                ("exchange_status", engine.check_exchange_status),
                ("marks", engine.mark_to_market),
            ]
            for name, step in steps:
                try:
                    await step()
                except ExchangeError as exc:
                    log.warning("reconcile.failed", step=name, error=f"{type(exc).__name__}: {exc}")
            await refresh_gauges()
            if stream.stats.reconnects and stream.connected.is_set() != self.health.stream_connected:
                self.bus.publish(StreamReconnected(ts_ms=_now(), stream="private", reconnects=stream.stats.reconnects))
            self.health.stream_connected = stream.connected.is_set()

        self.reconcile = reconcile  # the scheduled job, reachable for tests and diagnostics
        jobs = self.jobs
        jobs.add(reconcile, "interval", "reconcile", seconds=s.reconcile_interval_s, max_instances=1, coalesce=True)
        # Every CONTRACT_CHECK_S it looks whether a refresh is due (every 12 min, a minute after a failed one,
        # at once after a reconnect); a failure is logged and retried, never raised.
        jobs.add(contracts.tick, "interval", "contracts", seconds=CONTRACT_CHECK_S, max_instances=1, coalesce=True)
        hour, minute = (int(x) for x in s.telegram_daily_summary_utc.split(":"))

        async def daily_summary() -> None:
            now = engine.clock()  # the engine's clock: in a replay, the replayed day
            engine.risk.roll(now)  # the day that ended is "yesterday" even if nothing has marked the new one yet
            since = summarized_day(now) * DAY_MS
            closed = await events.closed_trades(since)  # with the funding read after a close
            self.bus.publish(summarize_day(closed, now_ms=now, risk=engine.risk))

        jobs.add(daily_summary, "cron", "daily-summary", hour=hour, minute=minute)

        async def prune_decisions() -> None:
            """The per-bar decision records older than DECISION_RETENTION_DAYS (by the engine's clock, the one the
            events are stamped with); trade history is kept. Without it the table grew ~88 MB a day on 542 symbols."""
            removed = await events.prune_decisions(engine.clock() - DECISION_RETENTION_DAYS * DAY_MS)
            if removed:
                log.info("events.pruned", kind="signal_evaluated", rows=removed, keep_days=DECISION_RETENTION_DAYS)
            if telegram is not None:  # sent notifications: one row each, kept for good before
                sent = await telegram.outbox.prune_sent(telegram.outbox.clock() - DECISION_RETENTION_DAYS * DAY_MS)
                if sent:
                    log.info("outbox.pruned", rows=sent, keep_days=DECISION_RETENTION_DAYS)
            # One row per approval card and per order (every stop move adds one), kept for good before.
            cards, intents = await engine.prune_history(engine.clock() - RECORD_RETENTION_DAYS * DAY_MS)
            if cards or intents:
                log.info("records.pruned", approvals=cards, intents=intents, keep_days=RECORD_RETENTION_DAYS)

        jobs.add(prune_decisions, "interval", "prune-decisions", hours=1, max_instances=1, coalesce=True)
        jobs.start()
        # Now, not only at the first reconciliation (RECONCILE_INTERVAL_S later): until then /metrics said equity 0
        # and no positions, which an alert on equity or on a recovered position would take at its word.
        await refresh_gauges()

        self.bus.publish(HealthChanged(ts_ms=_now(), component="engine", healthy=True, detail="started"))
        self.health.phase = "running"
        log.info("enygma.ready", http=url)
        try:
            await self.stop_event.wait()
        finally:
            log.info("enygma.stopping", detail="orders and stops stay on the exchange")
            await jobs.stop()  # a reconciliation in flight finishes (or is cut short quietly) before anything closes
            await stream.stop()
            with contextlib.suppress(TimeoutError):  # let in-flight entries and stop moves finish
                await asyncio.wait_for(lanes.drain(), timeout=10)
            await lanes.stop()  # a job still cut short is resumed from storage at the next start
            for task in self.tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            for gate in (telegram_ready, webhook_ready):
                if gate is not None and not gate.done():  # (a catch-up cancelled before it ran)
                    gate.set_result(None)
            if telegram is not None:
                try:
                    await telegram.stop()
                except Exception:  # shutting down anyway: record why Telegram did not stop cleanly
                    log.exception("telegram.stop_failed")
            await self.bus.drain(timeout_s=10)  # a subscriber hung on an unreachable webhook must not hold the exit
            await self.bus.stop()  # (the events themselves are in SQLite through the journal, not the subscribers)
            await journal.close()
            if webhook is not None:
                await webhook.close()
            if self.sim is not None:
                await self.sim.stop()
        return 0


async def market_streams(
    client: KucoinFuturesClient,
    symbols: list[str],
    primary: str,
    on_message: MessageHandler,
    on_reconnect: Callable[[], Awaitable[None]] | None,
    **stream_options: Any,
) -> StreamGroup:
    """The runtime's WebSocket topics (each symbol's primary candles, mark price and position) on as many
    connections as KuCoin's 300-topics-per-connection limit needs (one private token each)."""
    group = StreamGroup(client, on_message, private=True, on_reconnect=on_reconnect, **stream_options)
    for sym in symbols:
        await group.subscribe(f"/contractMarket/limitCandle:{sym}_{primary}")
        await group.subscribe(f"/contract/instrument:{sym}")
        await group.subscribe(f"/contract/position:{sym}", private=True)
    return group


Gate = asyncio.Future[SequencedSubscriber | None]  # a notifier's handler, once it has caught up (None: never)


async def _in_daemon_thread[T](fn: Callable[[StrategyConfig], T], cfg: StrategyConfig) -> T:
    """``fn(cfg)`` in a daemon thread: unlike ``asyncio.to_thread`` (the loop's executor, which the process waits for
    as it ends), a stop during a 30-60 s first compile ends the bot at once instead of after the compile."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, exc: BaseException | None) -> None:
        if done.done():
            return  # the start was cancelled (a stop) while it ran
        if exc is not None:
            done.set_exception(exc)
        else:
            done.set_result(cast(T, result))

    def work() -> None:
        try:
            result, exc = fn(cfg), None
        except BaseException as e:
            result, exc = None, e
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits any more
            loop.call_soon_threadsafe(settle, result, exc)

    threading.Thread(target=work, name="strategy-core-compile", daemon=True).start()
    return await done


def _after(ready: Gate) -> SequencedSubscriber:
    """The bus's subscriber for a notifier that catches up at the start (Telegram, the webhook): each event waits
    until the runs before are caught up (their late messages first, in order), then goes to the handler; to none
    when the catch-up never ended (the run stopped first)."""

    async def deliver(event: Event, seq: int | None) -> None:
        handler = await ready
        if handler is not None:
            await handler(event, seq)

    return deliver


async def _catch_up(work: Awaitable[object], ready: Gate, handler: SequencedSubscriber, name: str) -> None:
    """Send, marked late, what a crash left journaled but untold (``work``), then let this run's events through to
    ``handler``. Cut short by a stop, this run's are not handed on either: the cursor stays where the catch-up got
    to, and the next start sends them late, once (handed on, they would move it past the rest)."""
    try:
        await work
    except asyncio.CancelledError:
        ready.set_result(None)
        raise
    except Exception:  # storage trouble: the run goes on, and so do its messages
        log.exception(f"{name}.catch_up_failed")
    ready.set_result(handler)


async def _start_telegram(telegram: Any) -> None:
    """Telegram being unreachable must never stop trading: retry with backoff; messages wait in the outbox."""
    from telegram.error import NetworkError, TelegramError

    delay = 1.0
    while True:
        try:
            await telegram.start()
            log.info("telegram.connected")
            return
        except (NetworkError, TelegramError, OSError) as exc:
            log.error("telegram.unreachable", error=str(exc), retry_in_s=delay)
            await asyncio.sleep(delay)
            delay = min(60.0, delay * 2)


def _now() -> int:
    return int(time.time() * 1000)


async def run(settings: Settings, opts: RunOptions) -> int:
    rt = Runtime(settings, opts)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, rt.stop_event.set)
    return await rt.run()
