"""The generic webhook notifier against a real local HTTP endpoint: retries a failure, delivers JSON."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from aiohttp import web

from engine.events import HaltRaised, SignalEvaluated, StopMoved
from engine.runtime.webhook import CATCH_UP_MAX, WebhookNotifier, forget_cursor
from storage.db import Database
from storage.journal import EventJournal, journal_path_for
from tests.conftest import WebhookSink, serve_on_loopback


async def test_webhook_retries_then_delivers_the_event_as_json(webhook_sink: WebhookSink) -> None:
    webhook_sink.fail_first = 2
    notifier = WebhookNotifier(webhook_sink.url, backoff_s=0.01)
    try:
        await notifier(
            StopMoved(ts_ms=5, symbol="ETHUSDTM", old=Decimal("1989.29"), new=Decimal("2003.52"), reason="break_even")
        )
        dead = WebhookNotifier("http://127.0.0.1:9/hook", attempts=2, backoff_s=0.01)
        await dead(StopMoved(ts_ms=6, symbol="ETHUSDTM", old=Decimal(1), new=Decimal(2), reason="trailing_stop"))
        await dead.close()
    finally:
        await notifier.close()
    assert webhook_sink.received == [
        {
            "kind": "stop_moved",
            "ts_ms": 5,
            "symbol": "ETHUSDTM",
            "old": "1989.29",
            "new": "2003.52",
            "reason": "break_even",
        }
    ]
    assert (notifier.delivered, notifier.failed, dead.failed) == (1, 0, 1)


async def test_a_failing_webhook_never_logs_its_token_however_aiohttp_spells_the_url(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """For Slack or Discord the URL's path is the credential. The redactor knew the URL only as configured; aiohttp
    names it as it requested it (host in lower case), so 'webhook.failed' logged TooManyRedirects: ...,
    url='http://localhost:<port>/services/T01/B02/<token>' with the token in clear."""
    import structlog

    from engine.config.settings import load_settings
    from engine.logging import configure_logging

    async def hook(request: web.Request) -> web.Response:
        raise web.HTTPTemporaryRedirect(request.path)  # a misconfigured endpoint that redirects for ever

    app = web.Application()
    app.router.add_post("/services/T01/B02/hookTOKENzz9", hook)
    runner, port = await serve_on_loopback(app)
    monkeypatch.setenv("WEBHOOK_URL", f"http://LOCALHOST:{port}/services/T01/B02/hookTOKENzz9")
    settings = load_settings(Path("/nonexistent/.env"))
    assert settings.webhook_url is not None
    configure_logging(secrets=settings.secret_values(), json_output=True)
    notifier = WebhookNotifier(settings.webhook_url.get_secret_value(), attempts=1, backoff_s=0.01)
    try:
        await notifier(StopMoved(ts_ms=6, symbol="ETHUSDTM", old=Decimal(1), new=Decimal(2), reason="trailing_stop"))
    finally:
        await notifier.close()
        await runner.cleanup()
        structlog.reset_defaults()
    err = capsys.readouterr().err
    assert notifier.failed == 1 and '"event": "webhook.failed"' in err and "TooManyRedirects" in err, err
    assert "hookTOKENzz9" not in err, err


async def test_an_event_journaled_but_never_posted_is_posted_late_once_at_the_restart(
    webhook_sink: WebhookSink, tmp_path: Path
) -> None:
    """The process died between journaling a halt and posting it (the bus never handed it on). Before, nothing
    posted it ever (0 bodies). Now the restart posts it with its seq and ``"late": true``; a live one moves the
    cursor; a further restart posts nothing again. A backlog of 50 posts the newest CATCH_UP_MAX (40). A run
    without a webhook leaves nothing to post late."""
    async with Database(tmp_path / "w.sqlite") as db:
        journal = EventJournal(db, journal_path_for(tmp_path / "w.sqlite"))
        await journal.open()
        hook = WebhookNotifier(webhook_sink.url, backoff_s=0.01, db=db)
        try:
            await hook.claim(journal.last_seq)  # the first start with a webhook: no history
            journal.record(halt(1))  # seq 1, never posted
            await journal.flush()
            assert await hook.catch_up(journal.last_seq) == 1  # the restart
            await hook(halt(2), journal.record(halt(2)))  # seq 2, live
            await journal.flush()
            assert await hook.catch_up(journal.last_seq) == 0  # a clean restart
            assert [(b["seq"], b.get("late"), b["ts_ms"]) for b in webhook_sink.received] == [
                (1, True, 1),
                (2, None, 2),
            ]
            for n in range(50):
                journal.record(halt(100 + n))
            await journal.flush()
            assert await hook.catch_up(journal.last_seq) == CATCH_UP_MAX == 40
            assert [b["seq"] for b in webhook_sink.received[2:]] == list(range(13, 53))
            await forget_cursor(db)  # a run without the webhook
            journal.record(halt(7))
            await journal.flush()
            assert await hook.catch_up(journal.last_seq) == 0
            assert len(webhook_sink.received) == 42
        finally:
            await hook.close()
            await journal.close()


def halt(ts: int) -> HaltRaised:
    return HaltRaised(ts_ms=ts, limit="daily_loss", value="-612.40", threshold="-600")


async def test_a_bars_decision_that_did_not_pass_is_posted_without_a_write(
    webhook_sink: WebhookSink, tmp_path: Path
) -> None:
    """542 symbols make 542 decisions at each bar close: one commit each would hold the connection the entries use.
    Posted, but the cursor stays; a passed decision (and anything else) moves it."""
    async with Database(tmp_path / "w.sqlite") as db:
        hook = WebhookNotifier(webhook_sink.url, db=db)
        try:
            await hook.claim(0)
            changes = db.conn.total_changes
            await hook(SignalEvaluated(ts_ms=1, symbol="ETHUSDTM", decision={"passed": False}), 1)
            assert db.conn.total_changes == changes and len(webhook_sink.received) == 1
            await hook(SignalEvaluated(ts_ms=2, symbol="ETHUSDTM", decision={"passed": True}), 2)
            row = await db.fetchone("SELECT value FROM settings WHERE key = 'webhook_seq'")
            assert row is not None and row[0] == "2"
        finally:
            await hook.close()
