"""Phone-friendly HTML for every event; numbers with units, everything escaped."""

from __future__ import annotations

import html
import re
import time
from decimal import Decimal
from typing import Any

from engine.display import number_text, price_text, usdt
from engine.events import Event


def esc(value: object) -> str:
    return html.escape(str(value), quote=False)


TELEGRAM_LIMIT = 4096  # characters of one message after the markup is parsed
_TAG = re.compile(r"<(/?)([a-zA-Z-]+)[^>]*>")
_TELEGRAM_TAG = re.compile(
    r"</?(b|strong|i|em|u|ins|s|strike|del|code|pre|a|span|tg-spoiler|tg-emoji|blockquote)(\s[^>]*)?>", re.IGNORECASE
)


def _units(text: str) -> int:
    """Length as Telegram counts it (UTF-16 code units); an emoji counts two."""
    return len(text.encode("utf-16-le")) // 2


def _cut(line: str, size: int) -> int:
    """Where to cut a line longer than ``size`` units: never inside a tag or an entity, at a space if one is near."""
    cut = size
    while cut > 1 and _units(line[:cut]) > size:
        cut -= 1
    if line.rfind("<", 0, cut) > line.rfind(">", 0, cut):
        cut = line.rfind("<", 0, cut)
    amp = line.rfind("&", 0, cut)
    if amp > line.rfind(";", 0, cut) and cut - amp <= 10:
        cut = amp
    space = line.rfind(" ", 0, cut)
    if space > cut // 2:
        cut = space + 1
    return max(cut, 1)


def split_html(text: str, limit: int = TELEGRAM_LIMIT) -> list[str]:
    """``text`` as messages of at most ``limit`` units each, cut at line ends where possible; a tag open at a cut is
    closed at the end of one part and opened again at the start of the next, so every part is valid HTML."""
    if _units(text) <= limit:
        return [text]
    size = limit // 2  # room for the tags closed and reopened around a cut
    pieces: list[tuple[str, str]] = []  # (separator before, piece)
    for n, whole in enumerate(text.split("\n")):
        rest, sep = whole, "\n" if n else ""
        while _units(rest) > size:
            cut = _cut(rest, size)
            pieces.append((sep, rest[:cut]))
            rest, sep = rest[cut:], ""
        pieces.append((sep, rest))
    parts: list[str] = []
    chunk = ""
    opened: list[tuple[str, str]] = []  # (opening tag, name) in force at the end of the chunk
    for sep, piece in pieces:
        closing = "".join(f"</{name}>" for _, name in reversed(opened))
        glue = sep
        if chunk and _units(chunk + sep + piece) + len(closing) + 64 > limit:
            parts.append(chunk + closing)
            chunk, glue = "".join(tag for tag, _ in opened), ""
        chunk += glue + piece
        for m in _TAG.finditer(piece):
            if m.group(1):
                if opened:
                    opened.pop()
            else:
                opened.append((m.group(0), m.group(2)))
    if chunk.strip():
        parts.append(chunk)
    return [p for p in parts if p.strip()]


OUTCOME_MARK = "\n———\n"  # between a card's own details and its outcome (plain text: it survives Telegram's parsing)


def with_outcome(card: str, outcome: str, limit: int = TELEGRAM_LIMIT) -> str:
    """A resolved card: its own details (what was approved, armed or flattened) kept, the outcome below them. An
    earlier outcome on the card is replaced, not stacked. Over ``limit`` units, the details are cut (at a line end,
    the markup kept valid) so the outcome stays on the card; only an outcome that alone fills most of a message
    leaves the text long (the sender splits it)."""
    details = card.split(OUTCOME_MARK, 1)[0].rstrip()
    tail = OUTCOME_MARK + outcome
    if not details:
        return outcome
    if _units(details + tail) <= limit:
        return details + tail
    room = limit - _units(tail) - 1
    if room >= 100:
        details = split_html(details, room)[0].rstrip() + "…"
    return details + tail


def late_note(ts_ms: int, now_ms: int | None = None) -> str:
    """The line under a message queued at a restart for an event of the run before (the process died between
    journaling the event and queueing its message): when it happened, with its date unless that is today (UTC)."""
    when = time.gmtime(ts_ms // 1000)
    today = time.gmtime((time.time_ns() // 1_000_000 if now_ms is None else now_ms) // 1000)
    fmt = "%H:%M:%S" if when[:3] == today[:3] else "%Y-%m-%d %H:%M:%S"
    return f"<i>(delivered after a restart; happened at {time.strftime(fmt, when)} UTC)</i>"


def plain(text: str) -> str:
    """The HTML message as plain text: Telegram's tags dropped, entities decoded (the fallback when Telegram
    refuses the markup); anything else that looks like a tag is text and stays."""
    return html.unescape(_TELEGRAM_TAG.sub("", text))


def money(value: Any) -> str:
    """Rounded half-up to the cent (engine.display): the books keep every digit, a person reads cents."""
    return usdt(value)


def price(value: Any) -> str:
    """At most ten significant digits: a volume-weighted exit showed all 28 (1991.678444444444444444444444)."""
    return price_text(value)


def _funding(paid: Decimal) -> str:
    """The funding part of a close (``paid`` > 0: the position paid, < 0: it received), so gross − fees − funding
    on the phone adds up to the net shown; nothing when none was settled."""
    if not paid:
        return ""
    return f", funding {money(paid)} paid" if paid > 0 else f", funding {money(-paid)} received"


RESIZE_CAUSES = {
    "auto_deleverage": "auto-deleveraged by KuCoin",
    "liquidation": "liquidated by KuCoin",
    "manual": "by an order that is not the bot's",
    "take_profit": "the take-profit filled partly",
    "stop": "the stop filled partly",
}


def shadow_line(shadow: float, micro: float, record: dict[str, Any] | None = None) -> str:
    """The §11 shadow score in one line: what the score would be with the microstructure added (it is not)."""
    gaps = ""
    if record is not None:
        missing = [n for n, a in record.get("analyzers", {}).items() if a.get("missing")]
        if missing:
            gaps = f", no data: {esc(', '.join(missing))}"
    return f"shadow score {float(shadow):+.1f} (micro {float(micro):+.1f}, not applied{gaps})"


def format_event(event: Event) -> str | None:
    """The message for ``event``, or None when the event is not worth a notification."""
    d = event.to_dict()
    k = event.kind
    if k == "signal_evaluated":
        dec = d["decision"]
        if not dec.get("passed"):
            return None
        top = sorted((dec.get("primary") or {}).get("contributions", {}).items(), key=lambda kv: -abs(kv[1]))[:3]
        tops = ", ".join(f"{esc(n)} {v:+.1f}" for n, v in top)
        micro = dec.get("micro")
        return (
            f"📈 <b>Signal {esc(dec['symbol'])}</b> {esc(dec['direction'])}\n"
            f"score {dec['final_score']:+.1f}, confidence {dec['confidence']:.2f}\ntop: {tops}"
            + ("" if micro is None else "\n" + shadow_line(micro["shadow_score"], micro["micro_score"], micro))
        )
    if k == "approval_requested":
        why = ""
        if d.get("score") is not None:
            why = f"score {float(d['score']):+.1f} · confidence {float(d.get('confidence') or 0):.2f}\n"
        if d.get("gates"):
            why += f"gates passed: {esc(', '.join(d['gates']))}\n"
        if d.get("shadow_score") is not None:
            why += shadow_line(d["shadow_score"], d.get("micro_score") or 0.0) + "\n"
        return (
            f"🟡 <b>Approve {esc(d['side']).upper()} {esc(d['symbol'])}?</b>\n{why}"
            f"entry ≈ {price(d['entry'])}\nstop {price(d['stop'])} · TP {price(d['take_profit'])}\n"
            f"size {d['lots']} lots · {d['leverage']}x · margin {money(d['margin'])}\n"
            f"at risk ≈ {money(d['risk'])}\n"
            f"expires {time.strftime('%H:%M:%S', time.gmtime(int(d['expires_ms']) // 1000))} UTC"
        )
    if k == "approval_resolved":
        return f"Approval {esc(d['approval_id'][-6:])}: <b>{esc(d['outcome'])}</b> {esc(d.get('detail', ''))}".strip()
    if k == "order_placed":
        return f"🧾 {esc(d['purpose'])} order {esc(d['side'])} {d['lots']} lots {esc(d['symbol'])}"
    if k == "order_rejected":
        return f"⛔ {esc(d['purpose'])} on {esc(d['symbol'])} not placed: {esc(d['reason'])}"
    if k == "position_opened":
        return (
            f"✅ <b>Opened {esc(d['side'])} {esc(d['symbol'])}</b> {d['lots']} lots @ {price(d['entry'])}, "
            f"{d['leverage']}x\nstop {price(d['stop'])} · TP {price(d['take_profit'])}"
        )
    if k == "position_resized":
        old, new = int(d["old_lots"]), int(d["new_lots"])
        by = RESIZE_CAUSES.get(d["cause"], "cause not listed by KuCoin yet")
        at = f" @ {price(d['price'])}" if d.get("price") is not None else ""
        what = f"{abs(new - old)} lots {'added' if new > old else 'taken'}{at}, {by}"
        entry = f"entry now {price(d['entry'])} (average) · " if new > old else ""
        cover = (
            f"now cover {new} lots"
            if d.get("covered", True)
            else f"being resized to {new} lots (not yet confirmed on KuCoin; a message follows once they are)"
        )
        return (
            f"📏 <b>{esc(d['symbol'])} {esc(d['side'])} {old} → {new} lots</b>: {esc(what)}\n"
            f"{entry}stop {price(d['stop'])} · TP {price(d['take_profit'])} {cover}"
        )
    if k == "resize_confirmed":
        return (
            f"🛡 {esc(d['symbol'])} {esc(d['side'])}: stop {price(d['stop'])} · TP {price(d['take_profit'])} "
            f"now cover {d['lots']} lots (confirmed on KuCoin)"
        )
    if k == "stop_moved":
        if Decimal(str(d["old"])) == Decimal(str(d["new"])):
            return None  # a resize at the same price (position_resized says so): "1989.29 → 1989.29" told nothing
        return f"🔒 {esc(d['symbol'])} stop {price(d['old'])} → <b>{price(d['new'])}</b> ({esc(d['reason'])})"
    if k == "take_profit_moved":
        if Decimal(str(d["old"])) == Decimal(str(d["new"])):
            return None  # a resize at the same price: position_resized (or resize_confirmed) says it covers the lots
        return f"🎯 {esc(d['symbol'])} take-profit {price(d['old'])} → <b>{price(d['new'])}</b> ({esc(d['reason'])})"
    if k == "stop_missing":
        return f"🚨 <b>{esc(d['symbol'])} has no live stop</b>: {esc(d['detail'])} — re-placing now"
    if k == "liquidation_near":
        where = "KuCoin's" if d["source"] == "exchange" else "estimated"
        return (
            f"⚠️ <b>{esc(d['symbol'])} {esc(d['side'])} near liquidation</b>: mark {price(d['mark'])}, {where} "
            f"liquidation {price(d['liquidation'])} ({esc(d['buffer_pct'])} % away, minimum {esc(d['min_pct'])} %); "
            f"stop {price(d['stop'])} on the exchange"
        )
    if k == "foreign_order_seen":
        return (
            f"👤 {esc(d['symbol'])}: order {esc(d['order_id'])} ({esc(d['detail'])}) is not ENYGMA's — "
            "left alone, never cancelled by the bot"
        )
    if k == "position_closed":
        icon = "🟢" if Decimal(d["net"]) > 0 else "🔴"
        return (
            f"{icon} <b>Closed {esc(d['side'])} {esc(d['symbol'])}</b> ({esc(d['exit_reason'])})\n"
            f"{price(d['entry'])} → {price(d['exit'])}\nnet {money(d['net'])} after fees {money(d['fees'])}"
            + (_funding(Decimal(d.get("funding") or 0)) if d.get("funding_known", True) else ", funding: not read yet")
        )
    if k == "funding_booked":
        paid = Decimal(d["funding"])
        return (
            f"💸 {esc(d['symbol'])} {esc(d['side'])} closed earlier: funding read now"
            + (_funding(paid) if paid else ", funding 0.00 USDT")
            + f"; net now {money(d['net'])}"
        )
    if k == "halt_raised":
        value, limit = number_text(d["value"]), number_text(d["threshold"])
        return f"🛑 <b>Halt: {esc(d['limit'])}</b> value {esc(value)}, limit {esc(limit)}"
    if k == "trading_state_changed":
        return f"Trading state {esc(d['old'])} → <b>{esc(d['new'])}</b> ({esc(d['reason'])})"
    if k == "mode_changed":
        return f"⚙️ {esc(d['setting'])} = <b>{esc(d['value'])}</b> (by {esc(d['by'])})"
    if k == "drift_detected":
        return "⚠️ <b>Drift</b>: " + "; ".join(esc(x) for x in d["differences"]) + " — new entries paused"
    if k == "drift_cleared":
        return "✅ Drift cleared: the engine and the exchange agree again"
    if k == "stream_reconnected":
        return f"🔌 {esc(d['stream'])} stream reconnected ({d['reconnects']} so far)"
    if k == "health_changed":
        return f"{'💚' if d['healthy'] else '💔'} {esc(d['component'])}: {esc(d['detail'])}"
    if k == "contract_changed":
        return _contract_changed(d)
    if k == "kill_switch_report":
        state = (
            "account is <b>flat</b>" if d["flat"] else "<b>NOT flat</b>: " + "; ".join(esc(x) for x in d["leftovers"])
        )
        return (
            f"🧯 <b>Kill switch</b>: {d['cancelled_orders']} orders cancelled, "
            f"{len(d['closed_positions'])} positions closed; {state}"
        )
    if k == "candle_gap":
        return f"🕳️ {esc(d['symbol'])}: {d['missing']} missing {esc(d['timeframe'])} candles; warming up again"
    if k == "daily_summary":
        return (
            f"📅 <b>{esc(d['day'])}</b>: net {money(d['net_pnl'])}, fees {money(d['fees'])}, "
            f"{d['trades']} trades, drawdown {Decimal(d['drawdown_pct']):.2f} %"
        )
    return None


def _contract_changed(d: dict[str, Any]) -> str:
    """KuCoin changed a contract: loud (🚨, bold) when a position is open on one that no longer trades."""
    sym, old, new = esc(d["symbol"]), esc(d["old_status"]), esc(d["status"])
    lines = []
    if old != new:
        if d.get("loud"):
            lines.append(f"🚨 <b>{sym} contract {new}</b> (was {old}) with your {esc(d.get('position', ''))} open")
        elif new == "Open":
            lines.append(f"✅ {sym} contract Open again (was {old})")
        else:
            lines.append(f"⚠️ <b>{sym} contract {new}</b> (was {old})")
    changes = d.get("changes") or []
    if changes:
        lines.append(f"📐 {sym} contract changed: " + "; ".join(esc(c) for c in changes))
    if d.get("detail"):
        lines.append(esc(d["detail"]))
    return "\n".join(lines)
