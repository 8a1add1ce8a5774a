"""The Telegram cockpit: one factory builds the python-telegram-bot Application with one user-id gate in front
of every update, one handler table, and single-use, expiring button tokens."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from typing import Any

import structlog
from telegram import BotCommand, InlineKeyboardButton, InlineKeyboardMarkup, Message, Update
from telegram.error import BadRequest, InvalidToken, NetworkError, RetryAfter, TelegramError, TimedOut
from telegram.ext import (
    Application,
    ApplicationBuilder,
    ApplicationHandlerStop,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    ExtBot,
    MessageHandler,
    TypeHandler,
    filters,
)
from telegram.request import HTTPXRequest

from bot.formatting import esc, split_html, with_outcome
from bot.ports import TradingControl
from engine.logging import Redactor

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
    ("reset", "lift a latched circuit breaker or kill-switch halt (asks first)"),
]


@dataclass
class BotConfig:
    token: str = field(repr=False)  # never in a repr, a log line or a traceback
    allowed_user_ids: frozenset[int]
    chat_ids: tuple[int, ...]
    confirm_ttl_s: int = 60
    base_url: str | None = None
    # Every other secret in force (Settings.secret_values()): blanked, with the token, from every text the bot sends.
    secret_values: tuple[str, ...] = field(default=(), repr=False)

    def redact(self, text: str) -> str:
        """``text`` as the log redactor leaves it: no configured secret, no URL's user:password, no bot token."""
        return Redactor((self.token, *self.secret_values)).text(text)


@dataclass
class Tokens:
    """Single-use, expiring button tokens for confirmations (kill switch, arming)."""

    ttl_s: int
    issued: dict[str, tuple[str, float]] = field(default_factory=dict)
    outcomes: dict[str, str] = field(default_factory=dict)  # what a used token did, for a second press

    def issue(self, action: str) -> str:
        now = time.monotonic()
        self.issued = {t: e for t, e in self.issued.items() if e[1] >= now}  # forget the expired ones
        token = secrets.token_urlsafe(12)
        self.issued[token] = (action, now + self.ttl_s)
        return token

    def take(self, token: str, action: str) -> bool:
        entry = self.issued.pop(token, None)
        return entry is not None and entry[0] == action and entry[1] >= time.monotonic()

    def done(self, token: str, outcome: str) -> None:
        self.outcomes[token] = outcome
        while len(self.outcomes) > 100:
            del self.outcomes[next(iter(self.outcomes))]


@dataclass
class BotState:
    control: TradingControl
    config: BotConfig
    tokens: Tokens
    unauthorized: int = 0  # updates from users not allowed, all of them (read by /metrics)
    # user id -> (when their last warning was logged, updates since then not logged): one line per stranger per window
    strangers: dict[int | None, tuple[float, int]] = field(default_factory=dict)
    clock: Callable[[], float] = time.monotonic
    warned_chats: set[int] = field(default_factory=set)  # unconfigured chats the owner was told about, once each


UNAUTHORIZED_LOG_WINDOW_S = 600.0  # one warning line per stranger per window, with the count of the ones not logged
UNAUTHORIZED_USERS_KEPT = 1_000  # strangers remembered for that; beyond it the oldest is forgotten (and logs again)


def _note_stranger(state: BotState, user_id: int | None) -> None:
    """Count an update from a user who is not allowed, and log it at most once per user per window: every update
    logged a warning, so a stranger or a bot spamming a group could flood the log. They still get no answer."""
    state.unauthorized += 1
    now = state.clock()
    seen = state.strangers.get(user_id)
    if seen is not None and now - seen[0] < UNAUTHORIZED_LOG_WINDOW_S:
        state.strangers[user_id] = (seen[0], seen[1] + 1)
        return
    not_logged = 0 if seen is None else seen[1]
    log.warning(
        "telegram.unauthorized",
        user_id=user_id,
        not_logged_since_last=not_logged,
        detail=f"further updates from this user are logged at most every {UNAUTHORIZED_LOG_WINDOW_S:.0f} s",
    )
    state.strangers.pop(user_id, None)
    state.strangers[user_id] = (now, 0)
    while len(state.strangers) > UNAUTHORIZED_USERS_KEPT:
        del state.strangers[next(iter(state.strangers))]


class TokenRefused(TelegramError):
    """getUpdates answered 401 (the token was revoked in @BotFather). Raised in place of PTB's InvalidToken, which
    ended polling for good: the bot no longer heard commands, the kill switch included, even once the token worked
    again, until a restart. This one PTB's polling loop retries with its backoff (1 s growing to 30 s)."""


@dataclass
class TokenWatch:
    """Since when Telegram refuses the token (None while it takes it), and who hears when it takes it again."""

    refused_since: float | None = None
    on_resumed: Callable[[float], None] | None = None


class PollingBot(ExtBot[None]):
    """PTB's bot, whose polling survives a revoked token: logged once when Telegram refuses it, once when it takes it
    again (``watch.on_resumed`` gets the seconds it was refused)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        with self._unfrozen():  # PTB freezes its objects after __init__; ExtBot sets its own fields the same way
            self.watch = TokenWatch()

    async def get_updates(self, *args: Any, **kwargs: Any) -> tuple[Update, ...]:
        watch = self.watch
        try:
            updates = await super().get_updates(*args, **kwargs)
        except InvalidToken as exc:
            if watch.refused_since is None:
                watch.refused_since = time.monotonic()
                log.error(
                    "telegram.token_refused",
                    error=str(exc),
                    detail="no commands are received; polling retries (at least every 30 s) until the token works",
                )
            raise TokenRefused(str(exc)) from exc
        if watch.refused_since is not None:
            refused_s, watch.refused_since = time.monotonic() - watch.refused_since, None
            log.warning("telegram.token_accepted", refused_s=round(refused_s, 1), detail="polling resumed")
            if watch.on_resumed is not None:
                watch.on_resumed(refused_s)
        return updates


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
    base = config.base_url or "https://api.telegram.org"
    bot = PollingBot(  # the requests ApplicationBuilder makes by default: 256 connections, 1 for getUpdates
        config.token,
        base_url=f"{base}/bot",
        base_file_url=f"{base}/file/bot",
        request=HTTPXRequest(connection_pool_size=256),
        get_updates_request=HTTPXRequest(connection_pool_size=1),
    )
    app = ApplicationBuilder().bot(bot).build()
    state = BotState(control, config, Tokens(config.confirm_ttl_s))
    app.bot_data["state"] = state

    async def gate(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """One check in front of every update: unknown users get nothing at all, and an allowed user is obeyed only
        in a configured chat or their own private chat (a command in any other group would act unseen)."""
        user = update.effective_user
        if user is None or user.id not in config.allowed_user_ids:
            _note_stranger(state, None if user is None else user.id)
            raise ApplicationHandlerStop
        if reply_chat(update) is None:
            await note_unconfigured(update)
            raise ApplicationHandlerStop
        # An edit of an old message, or someone else's words forwarded, is not a new order from this user.
        edited, message = update.edited_message, update.message
        forwarded = message is not None and (message.forward_origin is not None or message.is_automatic_forward)
        if edited is not None or forwarded:
            if (update.effective_message is not None) and (update.effective_message.text or "").startswith("/"):
                why = "an edited message" if edited is not None else "a forwarded message"
                await reply(update, f"Not obeyed: {why} is not a command. Send the command again yourself.")
            raise ApplicationHandlerStop

    async def note_unconfigured(update: Update) -> None:
        """An allowed user's command in a chat nobody configured is not obeyed; say so once per chat, privately.
        Silence there looked like a bot that is down."""
        chat, user, message = update.effective_chat, update.effective_user, update.message
        if chat is None or user is None or message is None or chat.id in state.warned_chats:
            return
        word = (message.text or "").split(maxsplit=1)[0] if (message.text or "").startswith("/") else ""
        command, at, addressee = word.partition("@")
        if not command or (at and addressee.lower() != (update.get_bot().username or "").lower()):
            return
        state.warned_chats.add(chat.id)
        where = f"«{esc(chat.title)}» ({chat.id})" if chat.title else f"chat {chat.id}"
        text = (
            f"Not obeyed: {esc(command)} in {where}, a chat not in TELEGRAM_CHAT_IDS. Commands work here, in our "
            "private chat; to command me there too, add that id to TELEGRAM_CHAT_IDS and restart."
        )
        with contextlib.suppress(TelegramError):  # the owner never opened a private chat with the bot: nothing to do
            await deliver(update, [partial(update.get_bot().send_message, user.id, text, parse_mode="HTML")])

    def reply_chat(update: Update) -> int | None:
        """The chat to answer in: a configured chat or the user's own private chat; otherwise none."""
        chat, user = update.effective_chat, update.effective_user
        if chat is None or user is None:
            return None
        if chat.id not in config.chat_ids and chat.id != user.id:
            log.warning("telegram.unconfigured_chat", chat_id=chat.id, user_id=user.id)
            return None
        return chat.id

    async def deliver(update: Update, sends: list[Callable[[], Awaitable[object]]]) -> None:
        """Make the calls in order. One that meets a flood wait or a network error hands itself and the rest to a
        background task: commands and buttons that change state run one at a time, and waiting out the flood in
        the handler (up to 60 s, four times) held up every update behind it, a kill-switch press too."""
        for n, send in enumerate(sends):
            try:
                await send()
            except (RetryAfter, TimedOut, NetworkError) as exc:
                if isinstance(exc, BadRequest):
                    raise
                wait = 0.5 if not isinstance(exc, RetryAfter) else _seconds(exc.retry_after)
                app.create_task(_later(wait, sends[n:]), update=update, name="telegram-reply")
                return

    def messages(
        update: Update, text: str, markup: InlineKeyboardMarkup | None = None
    ) -> list[Callable[[], Awaitable[object]]]:
        """The calls that send ``text`` as HTML, several messages when over Telegram's limit, buttons on the last."""
        chat_id = reply_chat(update)
        if chat_id is None:
            return []
        parts = split_html(text)
        return [
            partial(
                update.get_bot().send_message,
                chat_id,
                part,
                parse_mode="HTML",
                reply_markup=markup if n == len(parts) - 1 else None,
            )
            for n, part in enumerate(parts)
        ]

    async def reply(update: Update, text: str, markup: InlineKeyboardMarkup | None = None) -> None:
        """Answer in HTML; a text over Telegram's limit goes as several messages, the buttons on the last."""
        await deliver(update, messages(update, text, markup))

    async def edit_card(update: Update, outcome: str) -> None:
        """Show the outcome on the card (its buttons go) below the card's own details, which stay: the trader
        must still see what was approved or confirmed. What does not fit follows as new messages."""
        query = update.callback_query
        if query is None or query.message is None:
            await reply(update, outcome)
            return
        first, *rest = split_html(with_outcome(_card_html(query.message), outcome))

        async def edit() -> None:
            try:
                await query.edit_message_text(first, parse_mode="HTML")
            except BadRequest as exc:
                if "not modified" not in str(exc).lower():  # a retried edit that had landed after all
                    raise

        await deliver(update, [edit, *(messages(update, "\n".join(rest)) if rest else [])])

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
        await _patiently(partial(update.get_bot().send_photo, chat_id, png, caption=args[0].upper()[:64]))

    async def health(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Readiness."""
        data = await control.health()
        await reply(update, "<b>Health</b>\n" + "\n".join(f"{esc(k)}: {esc(v)}" for k, v in data.items()))

    async def mode(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Offer Auto / Manual: one short-lived, single-use card, like the other confirmations (an old card tapped
        by mistake must not switch approve-each-trade off)."""
        token = state.tokens.issue("mode")
        await reply(
            update,
            "Entries:",
            InlineKeyboardMarkup(
                [
                    [
                        InlineKeyboardButton("Auto", callback_data=f"mode:{token}:auto"),
                        InlineKeyboardButton("Manual (approve each)", callback_data=f"mode:{token}:manual"),
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
        await reply(update, esc(await control.resume(by=_who(update))))

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

    async def reset(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Step one of two: which latched halts would be lifted, and a short-lived confirmation button."""
        halts = await control.halts()
        if not halts:
            await reply(
                update,
                "Nothing to reset: no halt is latched. (The daily loss limit, the loss streak and the cooldowns end "
                "by themselves; /resume ends a pause.)",
            )
            return
        token = state.tokens.issue("reset")
        await reply(
            update,
            "⚠️ <b>Lift these halts?</b>\n"
            + "\n".join(f"• {esc(h)}" for h in halts)
            + f"\nNew entries will be allowed again. This button expires in {config.confirm_ttl_s} s.",
            InlineKeyboardMarkup([[InlineKeyboardButton("Yes, allow new entries", callback_data=f"rh:{token}")]]),
        )

    async def unknown(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """An unknown command gets a short, clear answer (one addressed to another bot in a group, none)."""
        message = update.effective_message
        word = "" if message is None or not message.text else message.text.split(maxsplit=1)[0]
        _, at, addressee = word.partition("@")
        if at and addressee.lower() != (update.get_bot().username or "").lower():
            return
        await reply(update, "Unknown command. /help lists what I understand.")

    async def chatter(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Plain text in the private chat (a command typed without its slash) is not silently ignored."""
        await reply(update, "I only take commands; they start with a slash, e.g. /status. /help lists them.")

    async def button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Every button press: acted on at most once, answered, then the card is edited with the outcome."""
        query = update.callback_query
        if query is None:
            return
        data = query.data or ""
        by = _who(update)
        kind, _, rest = data.partition(":")
        outcome = "expired"
        answered = False
        if kind == "ap":
            approval_id, _, verdict = rest.rpartition(":")
            if verdict == "y":
                outcome = await control.approve(approval_id, by=by)
            elif verdict == "n":
                outcome = "rejected" if await control.reject(approval_id, by=by) else "expired"
            if outcome == "expired" and verdict in ("y", "n"):
                # Nothing happened: say why, and never write "expired" over a card that was executed elsewhere.
                decided = await control.approval_state(approval_id)
                if decided in ("APPROVED", "EXECUTED", "REJECTED", "FAILED_RECHECK"):
                    outcome = f"already {_DECIDED[decided]}: nothing done"
        elif kind == "ks" and state.tokens.take(rest, "kill"):
            # Closing everything can take a while (rate limits): acknowledge now, not after a silent minute.
            with contextlib.suppress(TelegramError):
                await query.answer("🧯 Flattening everything… this card will show the outcome.")
                answered = True
            outcome = await control.kill_switch(by=by)
            state.tokens.done(rest, outcome)
        elif kind == "arm" and state.tokens.take(rest, "arm"):
            outcome = await control.arm(by=by)
            state.tokens.done(rest, outcome)
        elif kind == "rh" and state.tokens.take(rest, "reset"):
            outcome = await control.reset_halts(by=by)
            state.tokens.done(rest, outcome)
        elif kind in ("ks", "arm", "rh") and rest in state.tokens.outcomes:
            # Pressed again (a double tap, a second device): nothing runs twice, and the card keeps its outcome.
            outcome = f"{state.tokens.outcomes[rest]}\n(pressed again: nothing done)"
        elif kind == "mode":
            token, _, choice = rest.partition(":")
            if choice in ("auto", "manual") and state.tokens.take(token, "mode"):
                await control.set_control_mode(choice, by=by)
                outcome = f"control mode: {choice}"
                state.tokens.done(token, outcome)
            elif choice in ("auto", "manual") and token in state.tokens.outcomes:
                outcome = f"{state.tokens.outcomes[token]}\n(pressed again: nothing done)"
        if outcome == "expired" and kind in _AGAIN:  # a trader in a hurry needs the way on, not only the verdict
            outcome = f"expired: send /{_AGAIN[kind]} again"
        if not answered:
            with contextlib.suppress(TelegramError):  # too late to answer (the press waited in a queue): report anyway
                await query.answer(_toast(outcome))
        await edit_card(update, esc(outcome))

    async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A handler failed (the engine or the exchange raised, Telegram refused): say so where it was asked, so a
        command or a button never ends in silence; the bot and the engine go on."""
        exc = context.error
        log.error("telegram.handler_failed", error=repr(exc), exc_info=exc)
        if not isinstance(update, Update) or reply_chat(update) is None:
            return
        # Cut before escaping: cut after, it ended inside an entity ('&l' of '&lt;'), which a strict parser refuses.
        raw = config.redact(f"{type(exc).__name__}: {exc}")
        detail = esc(raw if len(raw) <= 600 else raw[:599] + "…")
        query = update.callback_query
        try:
            if isinstance(exc, TelegramError):
                # Telegram refused our answer, after the engine may well have acted: never call that a failure.
                await reply(update, f"⚠️ Telegram refused the answer ({detail}). /status shows where things stand.")
            elif query is not None:
                what = _BUTTONS.get((query.data or "").partition(":")[0], "that button")
                with contextlib.suppress(TelegramError):
                    await query.answer(f"{what} failed", show_alert=True)
                if query.message is not None:
                    text = with_outcome(_card_html(query.message), f"⚠️ {esc(what)} failed: {detail}")
                    with contextlib.suppress(TelegramError):
                        await query.edit_message_text(split_html(text)[0], parse_mode="HTML")
                await reply(update, f"🚨 <b>{esc(what).capitalize()} failed</b>: {detail}")
            elif update.effective_message is not None:
                command = (update.effective_message.text or "").split(maxsplit=1)[0:1] or ["that"]
                await reply(update, f"⚠️ {esc(command[0])} failed: {detail}\nThe engine keeps running.")
        except TelegramError as again:
            log.error("telegram.error_report_failed", error=repr(again))

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
        ("reset", reset),
    ):
        # PTB handles one update at a time: a read-only command waiting on the exchange (/orders, /chart) would
        # hold up everything after it, the kill switch too. Those run on their own; what changes state keeps order.
        app.add_handler(CommandHandler(name, fn, block=name not in _READ_ONLY))
    app.add_handler(CallbackQueryHandler(button))
    app.add_handler(MessageHandler(filters.COMMAND, unknown))
    app.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND & filters.ChatType.PRIVATE, chatter))
    app.add_error_handler(on_error)
    return app


_DECIDED = {
    "APPROVED": "approved (executing)",
    "EXECUTED": "executed",
    "REJECTED": "rejected",
    "FAILED_RECHECK": "refused at the re-check",
}
_READ_ONLY = frozenset(
    {"start", "help", "status", "positions", "orders", "pnl", "signals", "config", "chart", "health"}
)
_BUTTONS = {"ks": "kill switch", "arm": "arming", "ap": "approval", "mode": "mode change", "rh": "halt reset"}
_AGAIN = {"ks": "killswitch", "arm": "arm", "mode": "mode", "rh": "reset"}  # the command that issues a fresh card


async def _later(wait_s: float, sends: list[Callable[[], Awaitable[object]]]) -> None:
    """The rest of a reply, off PTB's update queue: after the wait Telegram asked for, each call with retries."""
    if wait_s > 60:
        raise RetryAfter(int(wait_s))  # too long to be worth it: the error handler says Telegram refused
    await asyncio.sleep(wait_s)
    for send in sends:
        await _patiently(send)


def _seconds(retry_after: int | float | timedelta) -> float:
    """``RetryAfter.retry_after`` in seconds, whether PTB gives a number or a timedelta."""
    return retry_after.total_seconds() if isinstance(retry_after, timedelta) else float(retry_after)


async def _patiently[T](send: Callable[[], Awaitable[T]], attempts: int = 4, max_wait_s: float = 60.0) -> T:
    """A call to Telegram that waits out a flood wait (429) and retries a network error, a few times."""
    for attempt in range(attempts):
        try:
            return await send()
        except RetryAfter as exc:
            wait = _seconds(exc.retry_after)
            if attempt == attempts - 1 or wait > max_wait_s:
                raise
            log.warning("telegram.flood_wait", retry_after_s=wait)
            await asyncio.sleep(wait)
        except (TimedOut, NetworkError) as exc:
            if isinstance(exc, BadRequest) or attempt == attempts - 1:
                raise
            await asyncio.sleep(0.5 * 2**attempt)
    raise AssertionError("unreachable")


def _card_html(message: object) -> str:
    """The card's text as HTML, rebuilt from the message Telegram sent back with the press; empty when there is
    none (a message too old for Telegram to include)."""
    if not isinstance(message, Message) or not message.text:
        return ""
    return message.text_html


def _toast(outcome: str) -> str:
    """The short answer under a pressed button: the outcome's first line (a refused arming said "done" before),
    within Telegram's 200 characters."""
    if outcome.endswith("(pressed again: nothing done)"):
        return "pressed again: nothing done"
    first = outcome.splitlines()[0] if outcome.strip() else "done"
    return first if len(first) <= 190 else first[:189] + "…"


def _who(update: Update) -> str:
    user = update.effective_user
    return "unknown" if user is None else f"telegram:{user.id}"
