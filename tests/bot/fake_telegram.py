"""A fake Telegram Bot API server (aiohttp, loopback) that the real python-telegram-bot library talks to."""

from __future__ import annotations

import asyncio
import contextlib
import html
import itertools
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

BOT_USER = {"id": 999, "is_bot": True, "first_name": "ENYGMA", "username": "enygma_test_bot"}


@dataclass
class Sent:
    method: str
    params: dict[str, Any]


@dataclass
class FakeTelegram:
    token: str = "123456:TEST-token"
    updates: list[dict[str, Any]] = field(default_factory=list)
    calls: list[Sent] = field(default_factory=list)
    fail_429_next: int = 0
    retry_after: int = 1
    fail_network_next: int = 0
    forbidden_chats: set[int] = field(default_factory=set)  # "bot was blocked by the user"
    forbidden_calls: list[Sent] = field(default_factory=list)  # the calls answered 403 for a forbidden chat
    migrated_chats: dict[int, int] = field(default_factory=dict)  # a group upgraded to a supergroup: old -> new id
    migrated_calls: list[Sent] = field(default_factory=list)  # the calls to an old group id, answered 400
    fail_5xx: dict[str, int] = field(default_factory=dict)  # method -> how many calls answer 502 Bad Gateway
    slow_answers: bool = False  # answerCallbackQuery fails as Telegram does for a query older than its window
    conflicts: int = 0  # getUpdates answers 409 this many times: another process polls the same token
    send_delay_s: float = 0.0  # sendMessage answers only after this long (a slow network): a send in flight
    _ids: Any = field(default_factory=lambda: itertools.count(1))
    _update_ids: Any = field(default_factory=lambda: itertools.count(1000))
    _new_update: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""
    _runner: web.AppRunner | None = None
    texts: dict[tuple[int, int], str] = field(default_factory=dict)  # what each sent message says now
    markups: dict[tuple[int, int], Any] = field(default_factory=dict)  # the buttons each sent message carries now

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = next(a[1] for a in self._runner.addresses if isinstance(a, tuple))
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # ------------------------------------------------------------------ test helpers

    def push_message(
        self, user_id: int, text: str, chat_id: int | None = None, *, kind: str = "message", **extra: Any
    ) -> None:
        """A message (or, with ``kind="edited_message"``, an edit); ``extra`` adds fields such as forward_origin."""
        entities = (
            [{"type": "bot_command", "offset": 0, "length": len(text.split(maxsplit=1)[0])}]
            if text.startswith("/")
            else []
        )
        chat = chat_id or user_id
        self._push(
            {
                kind: {
                    "message_id": next(self._ids),
                    "date": int(time.time()),
                    "text": text,
                    "entities": entities,
                    "from": _user(user_id),
                    "chat": {"id": chat, "type": "private" if chat > 0 else "supergroup", "title": "g"},
                    **({"edit_date": int(time.time())} if kind == "edited_message" else {}),
                    **extra,
                }
            }
        )

    def push_edited_message(self, user_id: int, text: str, chat_id: int | None = None) -> None:
        self.push_message(user_id, text, chat_id, kind="edited_message")

    def push_callback(
        self,
        user_id: int,
        data: str,
        message_id: int | None = None,
        chat_id: int | None = None,
        *,
        inaccessible: bool = False,
    ) -> None:
        """A press of the button carrying ``data``. As Telegram does, the update holds the message the button sits
        on, as it reads now (plain text plus formatting entities); without ``message_id`` that is the latest message
        of the chat whose buttons include ``data``, and a message this server never sent reads "card". With
        ``inaccessible`` the message is one Telegram no longer shows the bot (too old): only its chat and id, date 0."""
        chat = chat_id or user_id
        if message_id is None:
            message_id = next(
                (
                    mid
                    for (c, mid), markup in sorted(self.markups.items(), reverse=True)
                    if c == chat and data in json.dumps(markup)
                ),
                1,
            )
        text, entities = _entities(self.texts.get((chat, message_id), "card"))
        message: dict[str, Any] = {"message_id": message_id, "date": 0, "chat": {"id": chat, "type": "private"}}
        if not inaccessible:
            message.update(date=int(time.time()), text=text, entities=entities, **{"from": BOT_USER})
        self._push(
            {
                "callback_query": {
                    "id": f"cq{next(self._ids)}",
                    "from": _user(user_id),
                    "chat_instance": "ci",
                    "data": data,
                    "message": message,
                }
            }
        )

    def _push(self, body: dict[str, Any]) -> None:
        self.updates.append({"update_id": next(self._update_ids), **body})
        self._new_update.set()

    def sent(self, method: str = "sendMessage") -> list[dict[str, Any]]:
        return [c.params for c in self.calls if c.method == method]

    async def wait_for(self, method: str, count: int = 1, timeout: float = 5.0) -> list[dict[str, Any]]:  # noqa: ASYNC109
        async with asyncio.timeout(timeout):
            while len(self.sent(method)) < count:
                await asyncio.sleep(0.01)
        return self.sent(method)

    # ------------------------------------------------------------------ the API

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if request.match_info["token"] != self.token:
            return web.json_response({"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401)
        params = await _params(request)
        if method == "sendMessage" and self.send_delay_s:
            await asyncio.sleep(self.send_delay_s)
        if self.fail_5xx.get(method, 0) > 0:
            self.fail_5xx[method] -= 1
            return _error(502, "Bad Gateway")
        if method in ("sendMessage", "editMessageText"):
            if self.fail_network_next > 0:
                self.fail_network_next -= 1
                if request.transport is not None:
                    request.transport.close()
                raise web.HTTPServiceUnavailable
            if self.fail_429_next > 0:
                self.fail_429_next -= 1
                return web.json_response(
                    {
                        "ok": False,
                        "error_code": 429,
                        "description": "Too Many Requests",
                        "parameters": {"retry_after": self.retry_after},
                    },
                    status=429,
                )
        if method in ("sendMessage", "editMessageText", "sendPhoto") and int(params.get("chat_id", 0) or 0) in (
            self.forbidden_chats
        ):
            self.forbidden_calls.append(Sent(method, params))
            return _error(403, "Forbidden: bot was blocked by the user")
        migrated_to = self.migrated_chats.get(int(params.get("chat_id", 0) or 0))
        if method in ("sendMessage", "editMessageText", "sendPhoto") and migrated_to is not None:
            self.migrated_calls.append(Sent(method, params))
            return web.json_response(
                {
                    "ok": False,
                    "error_code": 400,
                    "description": "Bad Request: group chat was upgraded to a supergroup chat",
                    "parameters": {"migrate_to_chat_id": migrated_to},
                },
                status=400,
            )
        if method in ("sendMessage", "editMessageText"):
            problem = _check_text(str(params.get("text", "")), params.get("parse_mode"))
            if problem is not None:
                return _error(400, f"Bad Request: {problem}")
        if method == "editMessageText":
            key = (int(params.get("chat_id", 0) or 0), int(params.get("message_id", 0) or 0))
            if self.texts.get(key) == params.get("text") and "reply_markup" not in params:
                return _error(400, "Bad Request: message is not modified: specified new message content is the same")
        if method == "getUpdates" and self.conflicts > 0:
            self.conflicts -= 1
            return _error(
                409, "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"
            )
        if method == "answerCallbackQuery" and self.slow_answers:
            return _error(400, "Bad Request: query is too old and response timeout expired or query ID is invalid")
        if method != "getUpdates":
            self.calls.append(Sent(method, params))
        return web.json_response({"ok": True, "result": await self._result(method, params)})

    async def _result(self, method: str, p: dict[str, Any]) -> Any:
        if method == "getMe":
            return BOT_USER
        if method in ("deleteWebhook", "setMyCommands", "answerCallbackQuery", "editMessageReplyMarkup"):
            return True
        if method == "getUpdates":
            offset = int(p.get("offset", 0) or 0)
            timeout = min(float(p.get("timeout", 0) or 0), 0.5)
            pending = [u for u in self.updates if u["update_id"] >= offset]
            if not pending and timeout:
                self._new_update.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._new_update.wait(), timeout)
                pending = [u for u in self.updates if u["update_id"] >= offset]
            return pending
        if method in ("sendMessage", "sendPhoto", "editMessageText"):
            chat = int(p.get("chat_id", 0))
            message_id = int(p.get("message_id", 0)) or next(self._ids)
            if method != "editMessageText" or (chat, message_id) in self.texts:  # only what this bot sent
                self.texts[(chat, message_id)] = p.get("text", "")
                self.markups[(chat, message_id)] = p.get("reply_markup")  # an edit without buttons removes them
            return {
                "message_id": message_id,
                "date": int(time.time()),
                "chat": {"id": chat, "type": "private"},
                "from": BOT_USER,
                "text": p.get("text", ""),
            }
        return True


_ENTITY_TYPES = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "code": "code",
    "pre": "pre",
    "tg-spoiler": "spoiler",
}
_PIECE = re.compile(r"<(/?)([a-zA-Z-]+)[^>]*>|&(?:#\d+|#x[0-9a-fA-F]+|lt|gt|amp|quot);|[^<&]+|[<&]")


def outcome(text: str) -> str:
    """The outcome written on a resolved card (below its kept details)."""
    from bot.formatting import OUTCOME_MARK

    return text.rsplit(OUTCOME_MARK, maxsplit=1)[-1]


def _entities(text: str) -> tuple[str, list[dict[str, Any]]]:
    """An HTML message as Telegram stores it: the plain text and its formatting entities (UTF-16 offsets)."""
    plain, entities, opened, pos = [], [], [], 0
    for m in _PIECE.finditer(text):
        if m.group(2) is not None:
            name = m.group(2).lower()
            if not m.group(1):
                opened.append((name, pos))
            elif opened:
                start_name, start = opened.pop()
                if start_name in _ENTITY_TYPES and pos > start:
                    entities.append({"type": _ENTITY_TYPES[start_name], "offset": start, "length": pos - start})
            continue
        piece = html.unescape(m.group(0))
        plain.append(piece)
        pos += len(piece.encode("utf-16-le")) // 2
    return "".join(plain), sorted(entities, key=lambda e: e["offset"])


_TAGS = {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "code", "pre", "a", "span", "tg-spoiler"}
_TOKEN = re.compile(r"<(/?)([a-zA-Z-]*)[^>]*>|&(#\d+|#x[0-9a-fA-F]+|lt|gt|amp|quot);|[<&]")


def _check_text(text: str, parse_mode: Any) -> str | None:
    """What Telegram would refuse in this text: None when it is fine."""
    plain = text
    if parse_mode == "HTML":
        stack: list[str] = []
        for m in _TOKEN.finditer(text):
            tok = m.group(0)
            if tok in ("<", "&"):
                return f"can't parse entities: unexpected {tok!r} at byte offset {m.start()}"
            if tok.startswith("<"):
                closing, tag = m.group(1), m.group(2).lower()
                if tag not in _TAGS:
                    return f"can't parse entities: unsupported start tag {tag!r} at byte offset {m.start()}"
                if closing:
                    if not stack or stack.pop() != tag:
                        return f"can't parse entities: unmatched end tag {tag!r}"
                else:
                    stack.append(tag)
        if stack:
            return f"can't parse entities: can't find end tag corresponding to start tag {stack[-1]!r}"
        plain = html.unescape(re.sub(r"<[^>]*>", "", text))
    if not plain.strip():
        return "message text is empty"
    if len(plain.encode("utf-16-le")) // 2 > 4096:
        return "message is too long"
    return None


def _error(code: int, description: str) -> web.Response:
    return web.json_response({"ok": False, "error_code": code, "description": description}, status=code)


def _user(user_id: int) -> dict[str, Any]:
    return {"id": user_id, "is_bot": False, "first_name": f"user{user_id}"}


async def _params(request: web.Request) -> dict[str, Any]:
    if request.content_type == "application/json":
        data: dict[str, Any] = await request.json()
        return data
    form = await request.post()
    out: dict[str, Any] = {}
    for key, value in form.items():
        if isinstance(value, str):
            try:
                out[key] = json.loads(value)
            except ValueError:
                out[key] = value
        else:
            out[key] = "<file>"
    return out
