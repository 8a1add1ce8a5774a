"""The Telegram cockpit: one factory builds the python-telegram-bot Application with one user-id gate in front
of every update, one handler table, and single-use, expiring button tokens."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import structlog
from telegram import BotCommand, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.ext import (
    Application,
    ApplicationBuilder,
    ApplicationHandlerStop,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    TypeHandler,
    filters,
)

from bot.formatting import esc
from bot.ports import TradingControl

log = structlog.get_logger(__name__)

COMMANDS = [
    ("start", "what this bot is"),
    ("help", "the commands"),
    ("status", "mode, equity, PnL, drawdown, positions, health"),
    ("positions", "open positions with stop and TP"),
    ("orders", "open orders and stops"),
    ("pnl", "net PnL today, 7 and 30 days"),
    ("signals", "latest decisions and why"),
    ("config", "effective settings (secrets hidden)"),
    ("chart", "chart SYMBOL: candles, entries, exits, stop path"),
    ("health", "data, streams, storage, reconciliation"),
    ("mode", "auto or manual entries"),
    ("pause", "stop opening new positions"),
    ("resume", "allow new positions again"),
    ("arm", "arm live trading (two steps)"),
    ("disarm", "disarm live trading"),
    ("killswitch", "cancel everything and flatten (asks first)"),
]


@dataclass
class BotConfig:
    token: str = field(repr=False)  # never in a repr, a log line or a traceback
    allowed_user_ids: frozenset[int]
    chat_ids: tuple[int, ...]
    confirm_ttl_s: int = 60
    base_url: str | None = None


@dataclass
class Tokens:
    """Single-use, expiring button tokens for confirmations (kill switch, arming)."""

    ttl_s: int
    issued: dict[str, tuple[str, float]] = field(default_factory=dict)

    def issue(self, action: str) -> str:
        token = secrets.token_urlsafe(12)
        self.issued[token] = (action, time.monotonic() + self.ttl_s)
        return token

    def take(self, token: str, action: str) -> bool:
        entry = self.issued.pop(token, None)
        return entry is not None and entry[0] == action and entry[1] >= time.monotonic()


@dataclass
class BotState:
    control: TradingControl
    config: BotConfig
    tokens: Tokens
    unauthorized: int = 0


def approval_keyboard(approval_id: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton("✅ Approve", callback_data=f"ap:{approval_id}:y"),
                InlineKeyboardButton("✖️ Reject", callback_data=f"ap:{approval_id}:n"),
            ]
        ]
    )


def build_application(config: BotConfig, control: TradingControl) -> Application[Any, Any, Any, Any, Any, Any]:
    """The whole bot. Tests pass the fake Bot API server's URL as ``config.base_url``."""
    builder = ApplicationBuilder().token(config.token)
    if config.base_url:
        builder = builder.base_url(f"{config.base_url}/bot").base_file_url(f"{config.base_url}/file/bot")
    app = builder.build()
    state = BotState(control, config, Tokens(config.confirm_ttl_s))
    app.bot_data["state"] = state

    async def gate(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """One check in front of every update: unknown users get nothing at all."""
        user = update.effective_user
        if user is None or user.id not in config.allowed_user_ids:
            state.unauthorized += 1
            log.warning("telegram.unauthorized", user_id=None if user is None else user.id)
            raise ApplicationHandlerStop

    def reply_chat(update: Update) -> int | None:
        """The chat to answer in: a configured chat or the user's own private chat; otherwise none."""
        chat, user = update.effective_chat, update.effective_user
        if chat is None or user is None:
            return None
        if chat.id not in config.chat_ids and chat.id != user.id:
            log.warning("telegram.unconfigured_chat", chat_id=chat.id)
            return None
        return chat.id

    async def reply(update: Update, text: str, markup: InlineKeyboardMarkup | None = None) -> None:
        chat_id = reply_chat(update)
        if chat_id is not None:
            await update.get_bot().send_message(chat_id, text, parse_mode="HTML", reply_markup=markup)

    async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Say what this is."""
        await reply(update, "ENYGMA here. Every signal, fill, stop move and halt comes to this chat. /help")

    async def help_cmd(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """List the commands."""
        await reply(update, "\n".join(f"/{name} — {esc(desc)}" for name, desc in COMMANDS))

    async def status(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Mode, arming, control, money, health."""
        data = await control.status()
        await reply(update, "<b>Status</b>\n" + "\n".join(f"{esc(k)}: {esc(v)}" for k, v in data.items()))

    async def positions(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Open positions."""
        rows = await control.positions()
        if not rows:
            await reply(update, "No open positions.")
            return
        await reply(update, "\n\n".join("\n".join(f"{esc(k)}: {esc(v)}" for k, v in r.items()) for r in rows))

    async def orders(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Open orders and stop orders."""
        lines = await control.orders()
        await reply(update, "\n".join(esc(x) for x in lines) or "No open orders.")

    async def pnl(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Net PnL over three horizons."""
        data = await control.pnl()
        await reply(update, "<b>PnL</b>\n" + "\n".join(f"{esc(k)}: {esc(v)}" for k, v in data.items()))

    async def signals(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Latest decisions."""
        lines = await control.signals()
        await reply(update, "\n".join(esc(x) for x in lines) or "No decisions yet.")

    async def config_cmd(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Effective settings, secrets redacted by the engine."""
        data = await control.config_view()
        await reply(update, "<b>Config</b>\n" + "\n".join(f"{esc(k)}: {esc(v)}" for k, v in data.items()))

    async def chart(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A picture of recent candles with entries, exits and the stop path."""
        args = context.args or []
        if not args:
            await reply(update, "Usage: /chart SYMBOL (e.g. /chart ETHUSDTM)")
            return
        chat_id = reply_chat(update)
        if chat_id is None:
            return
        png = await control.chart(args[0])
        if png is None:
            await reply(update, f"No candles for {esc(args[0])} yet.")
            return
        await update.get_bot().send_photo(chat_id, png, caption=f"{args[0].upper()}")

    async def health(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Readiness."""
        data = await control.health()
        await reply(update, "<b>Health</b>\n" + "\n".join(f"{esc(k)}: {esc(v)}" for k, v in data.items()))

    async def mode(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Offer Auto / Manual."""
        await reply(
            update,
            "Entries:",
            InlineKeyboardMarkup(
                [
                    [
                        InlineKeyboardButton("Auto", callback_data="mode:auto"),
                        InlineKeyboardButton("Manual (approve each)", callback_data="mode:manual"),
                    ]
                ]
            ),
        )

    async def pause(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Stop new entries."""
        await control.pause(by=_who(update))
        await reply(update, "Paused: no new entries. Stops are still managed.")

    async def resume(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Allow new entries."""
        await control.resume(by=_who(update))
        await reply(update, "Resumed: new entries allowed.")

    async def arm(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Step one of two: what live means, and a short-lived confirmation button."""
        token = state.tokens.issue("arm")
        info = await control.arm_info()
        await reply(
            update,
            f"⚠️ <b>Arm LIVE trading?</b>\n{esc(info)}\nThis button expires in {config.confirm_ttl_s} s.",
            InlineKeyboardMarkup([[InlineKeyboardButton("Yes, trade real money", callback_data=f"arm:{token}")]]),
        )

    async def disarm(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Back to shadow behaviour."""
        await control.disarm(by=_who(update))
        await reply(update, "Live trading disarmed.")

    async def killswitch(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Ask before flattening everything."""
        token = state.tokens.issue("kill")
        await reply(
            update,
            "🧯 <b>Cancel every order and close every position now?</b>",
            InlineKeyboardMarkup([[InlineKeyboardButton("Yes, flatten everything", callback_data=f"ks:{token}")]]),
        )

    async def unknown(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """An unknown command gets a short, clear answer."""
        await reply(update, "Unknown command. /help lists what I understand.")

    async def button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Every button press: answered first, then acted on once, then the card is edited."""
        query = update.callback_query
        if query is None:
            return
        data = query.data or ""
        by = _who(update)
        kind, _, rest = data.partition(":")
        outcome = "expired"
        if kind == "ap":
            approval_id, _, verdict = rest.rpartition(":")
            if verdict == "y":
                outcome = await control.approve(approval_id, by=by)
            elif verdict == "n":
                outcome = "rejected" if await control.reject(approval_id, by=by) else "expired"
        elif kind == "ks" and state.tokens.take(rest, "kill"):
            outcome = await control.kill_switch(by=by)
        elif kind == "arm" and state.tokens.take(rest, "arm"):
            outcome = await control.arm(by=by)
        elif kind == "mode" and rest in ("auto", "manual"):
            await control.set_control_mode(rest, by=by)
            outcome = f"control mode: {rest}"
        await query.answer("expired" if outcome == "expired" else "done")
        if query.message is not None:
            await query.edit_message_text(f"{esc(outcome)}", parse_mode="HTML")

    async def post_init(application: Application[Any, Any, Any, Any, Any, Any]) -> None:
        await application.bot.set_my_commands([BotCommand(n, d) for n, d in COMMANDS])

    app.post_init = post_init
    app.add_handler(TypeHandler(Update, gate), group=-1)
    for name, fn in (
        ("start", start),
        ("help", help_cmd),
        ("status", status),
        ("positions", positions),
        ("orders", orders),
        ("pnl", pnl),
        ("signals", signals),
        ("config", config_cmd),
        ("chart", chart),
        ("health", health),
        ("mode", mode),
        ("pause", pause),
        ("resume", resume),
        ("arm", arm),
        ("disarm", disarm),
        ("killswitch", killswitch),
    ):
        app.add_handler(CommandHandler(name, fn))
    app.add_handler(CallbackQueryHandler(button))
    app.add_handler(MessageHandler(filters.COMMAND, unknown))
    return app


def _who(update: Update) -> str:
    user = update.effective_user
    return "unknown" if user is None else f"telegram:{user.id}"
