"""The engine seen from the cockpit: implements ``bot.ports.TradingControl`` over a running TradingEngine."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import structlog

from engine.config.settings import Settings, shown_url
from engine.display import price_text, usdt
from engine.events import ModeChanged, PositionClosed
from engine.risk.limits import DAY_MS
from engine.runtime.engine import TradingEngine
from engine.runtime.http import Health
from storage.repos import EventLog
from storage.repos import Settings as SavedSwitches

log = structlog.get_logger(__name__)


async def restore_switches(engine: TradingEngine, saved: SavedSwitches) -> None:
    """At start-up: the control mode and the pause set from the cockpit before a restart still hold. Manual wins
    over the .env's auto (a restart must never quietly trade without approval); arming is never restored."""
    if await saved.get("control_mode") == "manual" and engine.options.control != "manual":
        engine.options.control = "manual"
        log.warning("switches.restored", control="manual", detail="set from the cockpit before the restart")
    if await saved.get("paused") == "true" and not engine.paused:
        engine.set_paused(True, by="restored after restart")
        log.warning("switches.restored", paused=True, detail="set from the cockpit before the restart")


SIGNALS_SHOWN = 40  # lines of /signals: one phone message, whatever the size of the universe
ARM_SYMBOLS_SHOWN = 10  # symbols named on the arming card


def dashboard_status(engine: TradingEngine, bot_mode: str) -> dict[str, Any]:
    """What /dashboard shows: the figures /status gives in Telegram, rounded the same way. Before, the equity
    was the raw Decimal (10086.88259132 beside /status's 10,086.88 USDT; after a close, a 28-digit sum)."""
    r = engine.risk
    r.roll(engine.clock())  # past midnight, "today" is the new day even before the next mark
    return {
        "mode": bot_mode,
        "armed": engine.options.armed,  # as armed or disarmed from Telegram, not as started
        "control": engine.options.control,
        "state": engine.state.value,
        "paused": engine.paused,
        "equity": usdt(r.equity),
        "today (realised)": usdt(r.realized_today, signed=True),
        "drawdown_pct": f"{r.drawdown_pct:.2f}",
        "positions": ", ".join(engine.managed) or "none",
    }


class EngineControl:
    def __init__(
        self,
        engine: TradingEngine,
        settings: Settings,
        events: EventLog | None = None,
        health: Health | None = None,
        *,
        saved: SavedSwitches | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.events = events
        self.health_state = health
        self.saved = saved

    async def orders(self) -> list[str]:
        """Every open order and stop order of the account, by symbol: one listing of each kind. Two per configured
        symbol were 1,084 signed calls for 542 symbols, out of the rate limit a stop replacement needs, and missed
        orders on symbols outside the universe."""
        client = self.engine.client
        rows = [
            (o.symbol, 0, f"{o.symbol} {o.side.value} {o.lots} lots @ {o.price} ({o.type.value})")
            for o in await client.open_orders()
        ]
        for o in await client.open_stop_orders():
            reduce = " reduce-only" if o.reduce_only else ""
            rows.append((o.symbol, 1, f"{o.symbol} stop {o.side.value} {o.lots} lots at {o.stop_price}{reduce}"))
        return [line for _, _, line in sorted(rows, key=lambda r: (r[0], r[1]))]

    async def pnl(self) -> dict[str, str]:
        now = self.engine.clock()  # the clock the closes are stamped with (in a replay, the replayed time)
        self.engine.risk.roll(now)  # past midnight, "today" is the new day even before the next mark
        closed: list[PositionClosed] = []
        if self.events is not None:
            month = now - 30 * DAY_MS
            closed = await self.events.closed_trades(month)  # with the funding read after a close
        out = {"today (realised)": usdt(self.engine.risk.realized_today, signed=True)}
        for label, days in (("7 days", 7), ("30 days", 30)):
            since = now - days * DAY_MS
            net = sum((e.net for e in closed if e.ts_ms >= since), Decimal(0))
            out[label] = f"{usdt(net, signed=True)} over {sum(1 for e in closed if e.ts_ms >= since)} trades"
        return out

    async def signals(self) -> list[str]:
        """The latest decision per symbol, what passed first, then the strongest scores; at most ``SIGNALS_SHOWN``
        lines. Alphabetical and complete, 542 symbols were 8 messages on the phone with an entry in the last one."""
        ranked = sorted(self.engine.last_decision.items(), key=lambda kv: (not kv[1].passed, -abs(kv[1].final_score)))
        lines = []
        for symbol, d in ranked[:SIGNALS_SHOWN]:
            verdict = "PASSED" if d.passed else "no entry: " + ", ".join(d.failing)
            lines.append(f"{symbol} score {d.final_score:+.1f} conf {d.confidence:.2f} — {verdict}")
        rest = ranked[SIGNALS_SHOWN:]
        if rest:
            passed = sum(1 for _, d in rest if d.passed)
            what = f", {passed} of them passed" if passed else " without an entry"
            lines.append(f"… and {len(rest)} more{what} (lower scores)")
        return lines

    async def config_view(self) -> dict[str, str]:
        shown = {k: str(v) for k, v in self.settings.redacted().items() if v not in (None, "", [], {})}
        gates = self.engine.cfg.effective_gates()
        shown["gates"] = (
            f"{'STRICT' if gates.strict else 'canonical'}: score {gates.min_score:g}, "
            f"confidence {gates.min_confidence:g}"
        )
        return shown

    async def chart(self, symbol: str) -> bytes | None:
        import asyncio

        from engine.runtime.chart import render_chart

        candles = list(self.engine.recent_candles.get(symbol.upper(), ()))
        if not candles:
            return None
        events = [] if self.events is None else await self.events.recent(2000)
        return await asyncio.to_thread(render_chart, symbol.upper(), candles, events)

    async def health(self) -> dict[str, str]:
        if self.health_state is None:
            return {"health": "unknown"}
        ok, checks = self.health_state.ready(int(time.time() * 1000))
        return {"ready": str(ok), **{k: str(v) for k, v in checks.items()}}

    async def status(self) -> dict[str, str]:
        e = self.engine
        e.risk.roll(e.clock())  # past midnight, "today" is the new day even before the next mark
        mode = e.options.mode.upper()
        if e.options.mode == "live" and not e.options.armed:
            mode += " (unarmed: behaves as shadow)"
        return {
            "mode": mode,
            "control": e.options.control,
            "state": e.state.value + (" · paused" if e.paused else ""),
            "equity": usdt(e.risk.equity),
            "today": f"{usdt(e.risk.realized_today, signed=True)} realised",
            "drawdown": f"{e.risk.drawdown_pct:.2f} %",
            "open positions": str(len(e.managed)),
            "new entries": "; ".join(self._entry_halts()) or "allowed",
            **self._closed_contracts(),
        }

    def _closed_contracts(self) -> dict[str, str]:
        """The configured contracts KuCoin does not keep Open (their symbols take no entry, the others trade)."""
        closed = self.engine.closed_contracts()
        if not closed:
            return {}
        return {"contracts not Open": ", ".join(f"{s} {status} (no entries)" for s, status in sorted(closed.items()))}

    def _entry_halts(self) -> list[str]:
        """Everything that refuses every new entry right now, in words (the per-symbol cooldowns aside): a trader
        asking /status wants to know whether the bot can trade and, if not, what lifts it."""
        e = self.engine
        r, rm = e.risk, e.cfg.risk_management
        out = []
        blocked = e.entries_blocked()
        if blocked is not None:
            lift = {"paused": " (/resume)", "trading state HALTED": " (/reset)"}.get(blocked, "")
            out.append(blocked + lift)
        if r.circuit_breaker:
            out.append(f"circuit breaker latched, drawdown {r.drawdown_pct:.2f} % (/reset)")
        if r.daily_pnl_pct <= -rm.daily_loss_limit_pct:
            out.append(f"daily loss limit: {r.daily_pnl_pct:.2f} % today (until 00:00 UTC)")
        if r.consecutive_losses >= rm.max_consecutive_losses:
            out.append(f"{r.consecutive_losses} losses in a row (until 00:00 UTC)")
        return out

    async def positions(self) -> list[dict[str, str]]:
        out = []
        for symbol, m in sorted(self.engine.managed.items()):
            p = m.protection
            out.append(
                {
                    "symbol": symbol,
                    "side": p.side.value,
                    "size": f"{p.lots} lots",
                    "entry": price_text(p.entry),
                    "stop": f"{price_text(p.stop)} ({p.stop_reason})",
                    "take profit": price_text(p.take_profit),
                    "leverage": f"{p.leverage}x",
                }
            )
        return out

    async def pause(self, by: str) -> None:
        self.engine.set_paused(True, by=by)
        if self.saved is not None:
            await self.saved.set("paused", "true")

    async def resume(self, by: str) -> str:
        """Lift the pause; what still refuses every entry is said (it answered "new entries allowed" under a
        latched circuit breaker)."""
        self.engine.set_paused(False, by=by)
        if self.saved is not None:
            await self.saved.set("paused", "false")
        still = self._entry_halts()
        if still:
            return "Pause lifted, but new entries are still refused: " + "; ".join(still)
        return "Resumed: new entries allowed."

    async def set_control_mode(self, mode: str, by: str) -> None:
        self.engine.options.control = mode
        if self.saved is not None:
            await self.saved.set("control_mode", mode)
        self.engine.bus.publish(ModeChanged(ts_ms=self.engine.clock(), setting="control", value=mode, by=by))

    async def approve(self, approval_id: str, by: str) -> str:
        return await self.engine.approve(approval_id, by=by)

    async def reject(self, approval_id: str, by: str) -> bool:
        return await self.engine.reject(approval_id, by=by)

    async def approval_state(self, approval_id: str) -> str | None:
        card = None if self.engine.approvals is None else await self.engine.approvals.get(approval_id)
        return None if card is None else str(card["state"])

    async def arm_info(self) -> str:
        """The arming card's text: the URL as /config shows it (it carried a relay's user and password into the
        chat), and the first symbols only (542 of them made the card three messages)."""
        rm = self.engine.cfg.risk_management
        account = shown_url(self.settings.kucoin_rest_url, keep_path=True)  # a proxy's user:password never shows
        symbols = self.settings.symbols
        named = ", ".join(symbols[:ARM_SYMBOLS_SHOWN]) + (", …" if len(symbols) > ARM_SYMBOLS_SHOWN else "")
        return (
            f"account: KuCoin futures ({account}); {len(symbols)} symbols ({named}); "
            f"risk per trade: {rm.position_size_percent} % of equity as margin (max {rm.max_position_percent} %), "
            f"stop at −{rm.stop_loss_roi} % ROI"
        )

    async def arm(self, by: str) -> str:
        if not self.settings.live_requested:
            return "refused: arming needs BOT_MODE=live and LIVE_TRADING_ARMED=true in .env"
        self.engine.options.armed = True
        self.engine.bus.publish(ModeChanged(ts_ms=self.engine.clock(), setting="armed", value="true", by=by))
        return "live trading ARMED"

    async def disarm(self, by: str) -> None:
        self.engine.options.armed = False
        self.engine.bus.publish(ModeChanged(ts_ms=self.engine.clock(), setting="armed", value="false", by=by))

    async def halts(self) -> list[str]:
        return self.engine.latched_halts()

    async def reset_halts(self, by: str) -> str:
        lifted = self.engine.reset_halts(by)
        if not lifted:
            return "nothing to reset: no halt is latched"
        still = " (still paused: /resume)" if self.engine.paused else ""
        return f"lifted by {by}: {'; '.join(lifted)}. New entries are allowed again{still}."

    async def kill_switch(self, by: str) -> str:
        report = await self.engine.kill_switch()
        if report.flat:
            return f"kill switch by {by}: account is flat ({report.cancelled_orders} orders cancelled)"
        return f"kill switch by {by}: NOT flat: {'; '.join(report.leftovers)}"
