"""No configured secret leaves the process through the cockpit's texts: a proxy URL's user and password
(KUCOIN_REST_URL=https://user:pass@proxy) never reach a Telegram card."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import WebhookSink
from tests.runtime.conftest import Rig

PROXY = "https://trader:pr0xyPASSw0rd@proxy.example.com:3128"


async def test_arm_card_names_the_account_without_the_proxy_password(rig: Rig) -> None:
    """The /arm confirmation card said "account: KuCoin futures (https://trader:<password>@proxy...:3128)" in the
    chat: the REST URL as configured, credentials and all."""
    from engine.config.settings import Settings
    from engine.runtime.control import EngineControl

    settings = Settings(_env_file=None, kucoin_rest_url=PROXY)  # type: ignore[call-arg]
    control = EngineControl(rig.engine, settings)
    info = await control.arm_info()
    assert info.startswith("account: KuCoin futures (https://proxy.example.com:3128); 1 symbols (ETHUSDTM); "), info
    shown = info + str(await control.status()) + str(await control.config_view())
    assert "pr0xyPASSw0rd" not in shown and "trader" not in shown, shown


async def test_an_event_carrying_an_error_text_is_stored_and_sent_without_the_secrets(tmp_path: Path) -> None:
    """Events carry errors' texts (a task that stopped: HealthChanged detail 'stopped: <error>'; a stop that could
    not be placed); they went as they were into the journal, the SQLite event log, Telegram and the webhook body.
    The runtime's bus now blanks every secret in force from an event's texts before anyone sees it."""
    from engine.config.settings import Settings
    from engine.events import HealthChanged
    from engine.runtime.app import RunOptions, Runtime
    from storage.db import Database
    from storage.journal import EventJournal, journal_path_for
    from storage.repos import EventLog

    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, kucoin_rest_url=PROXY, kucoin_api_passphrase="pass-PHRASE-42", db_path=tmp_path / "e.sqlite"
    )
    bus = Runtime(settings, RunOptions()).bus
    seen: list[HealthChanged] = []

    async def webhook(event: object) -> None:
        assert isinstance(event, HealthChanged)
        seen.append(event)

    async with Database(settings.db_path) as db:
        journal = EventJournal(db, journal_path_for(settings.db_path))
        await journal.open()
        bus.recorder = journal.record
        bus.subscribe("webhook", webhook)
        await bus.start()
        detail = f"stopped: NoAnswerError: 502 via {PROXY}: passphrase pass-PHRASE-42 refused"
        bus.publish(HealthChanged(ts_ms=1, component="stream", healthy=False, detail=detail))
        await journal.flush()
        stored = await EventLog(db).recent(limit=1)
        await bus.stop()
        await journal.close()
    assert len(stored) == 1 and isinstance(stored[0], HealthChanged) and len(seen) == 1
    for event in (stored[0], seen[0]):
        assert event.detail.startswith("stopped: NoAnswerError: 502 via https://***@proxy.example.com:3128"), event
        assert "pr0xyPASSw0rd" not in event.detail and "pass-PHRASE-42" not in event.detail, event


async def test_a_secret_nested_inside_an_event_is_stored_and_sent_blanked(tmp_path: Path) -> None:
    """The bus cleaned only an event's top-level texts: a secret inside ``SignalEvaluated.decision`` (a gate's
    reason, a list item, a dict in a list) or in ``DriftDetected.differences`` and ``KillSwitchReport.leftovers``
    reached the journal, the SQLite event log, Telegram and the webhook as it was. Numbers stay numbers, and an
    event with nothing to clean is handed on as the very same object (no copy on the hot path)."""
    from engine.config.settings import Settings
    from engine.events import DriftDetected, Event, KillSwitchReport, SignalEvaluated
    from engine.runtime.app import RunOptions, Runtime
    from storage.db import Database
    from storage.journal import EventJournal, journal_path_for
    from storage.repos import EventLog

    secret = "pass-PHRASE-42"
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, kucoin_rest_url=PROXY, kucoin_api_passphrase=secret, db_path=tmp_path / "e.sqlite"
    )
    bus = Runtime(settings, RunOptions()).bus
    seen: list[Event] = []

    async def webhook(event: Event) -> None:
        seen.append(event)

    decision = {
        "symbol": "ETHUSDTM",
        "final_score": 61.5,
        "failing": ["min_score", f"refused {secret}"],
        "gates": [{"code": "spread", "passed": False, "reason": f"book via {PROXY}", "value": 0.0012}],
        "mtf": {"alignment": "aligned", "notes": (f"note {secret}", 3)},
    }
    clean = SignalEvaluated(ts_ms=4, symbol="XBTUSDTM", decision={"symbol": "XBTUSDTM", "failing": ["min_score"]})
    async with Database(settings.db_path) as db:
        journal = EventJournal(db, journal_path_for(settings.db_path))
        await journal.open()
        bus.recorder = journal.record
        bus.subscribe("webhook", webhook)
        await bus.start()
        bus.publish(SignalEvaluated(ts_ms=1, symbol="ETHUSDTM", decision=decision))
        bus.publish(DriftDetected(ts_ms=2, differences=[f"order 7 unknown: {secret}", "ETHUSDTM size 3 != 2"]))
        bus.publish(KillSwitchReport(ts_ms=3, cancelled_orders=1, closed_positions=[], flat=False, leftovers=[PROXY]))
        bus.publish(clean)
        await journal.flush()
        stored = await EventLog(db).recent(limit=10)
        await bus.stop()
        await journal.close()
    assert len(stored) == 4 and len(seen) == 4
    assert seen[3] is clean  # nothing to clean: not copied
    for events in (sorted(stored, key=lambda e: e.ts_ms), seen):
        text = repr(events)
        assert secret not in text and "pr0xyPASSw0rd" not in text, text
        signal, drift, kill = (e for e in events if e.ts_ms < 4)
        assert isinstance(signal, SignalEvaluated) and isinstance(drift, DriftDetected)
        assert isinstance(kill, KillSwitchReport)
        assert signal.decision["failing"] == ["min_score", "refused ***"]
        assert signal.decision["gates"][0]["reason"] == "book via https://***@proxy.example.com:3128"
        assert signal.decision["gates"][0]["value"] == 0.0012 and signal.decision["final_score"] == 61.5
        assert list(signal.decision["mtf"]["notes"]) == ["note ***", 3]
        assert drift.differences == ["order 7 unknown: ***", "ETHUSDTM size 3 != 2"]
        assert kill.leftovers == ["https://***@proxy.example.com:3128"]
    assert decision["failing"] == ["min_score", f"refused {secret}"]  # the publisher's own dict is not changed


async def test_a_secret_as_a_dict_key_in_a_tuple_set_or_an_exception_reaches_no_sink(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], webhook_sink: WebhookSink
) -> None:
    """The bus cleaned dict values, list and tuple items, but not a dict's keys, set items or an exception's args:
    a passphrase used as a key (``{"acct-<passphrase>": 3}``) or carried by an error object went as it was to the
    journal file, the SQLite event log, the console log line and the webhook's JSON (a set or an exception even made
    the journal's json.dumps raise inside publish). The secret comes from the environment as the bot reads it; the
    texts around it, the numbers and the keys without a secret stay as they were."""
    import structlog

    from engine.config.settings import load_settings
    from engine.events import DriftDetected, Event, SignalEvaluated
    from engine.logging import configure_logging
    from engine.runtime.app import ConsoleNotifier, RunOptions, Runtime
    from engine.runtime.webhook import WebhookNotifier
    from storage.db import Database
    from storage.journal import EventJournal, journal_path_for

    secret = "envPASS-7731xq"
    received = webhook_sink.received
    monkeypatch.setenv("KUCOIN_API_PASSPHRASE", secret)
    monkeypatch.setenv("DB_PATH", str(tmp_path / "e.sqlite"))
    settings = load_settings(Path("/nonexistent/.env"))
    assert secret in settings.secret_values()
    configure_logging(secrets=settings.secret_values(), json_output=True)
    bus = Runtime(settings, RunOptions()).bus
    webhook = WebhookNotifier(webhook_sink.url, attempts=1)
    seen: list[Event] = []

    async def keep(event: Event) -> None:
        seen.append(event)

    decision = {
        "symbol": "ETHUSDTM",
        "final_score": 61.5,
        "by_account": {f"acct-{secret}": 3, "acct-main": 4},
        secret: "keyed by the secret",
        "pairs": [(f"pair {secret}", 2)],
        "tags": {f"tag {secret}"},
        "error": ValueError("login refused", {"passphrase": secret}),
    }
    drift = [f"order 7 unknown: {secret}", RuntimeError(f"listing failed for {secret}"), ("size", 3)]
    try:
        async with Database(settings.db_path) as db:
            journal = EventJournal(db, journal_path_for(settings.db_path))
            await journal.open()
            bus.recorder = journal.record
            bus.subscribe("console", ConsoleNotifier())
            bus.subscribe("webhook", webhook)
            bus.subscribe("keep", keep)
            await bus.start()
            bus.publish(SignalEvaluated(ts_ms=1, symbol="ETHUSDTM", decision=decision))
            bus.publish(DriftDetected(ts_ms=2, differences=drift))  # type: ignore[arg-type]
            journaled = journal.path.read_text()  # written at publish, before anyone else sees the event
            assert await bus.drain(timeout_s=10)
            await journal.flush()
            stored = [r[0] for r in await db.fetchall("SELECT payload FROM events ORDER BY seq")]
            await bus.stop()
            await journal.close()
    finally:
        await webhook.close()
        structlog.reset_defaults()
    console = capsys.readouterr().err
    assert len(stored) == 2 and len(received) == 2 and '"event": "drift_detected"' in console, console
    for sink, text in (("journal", journaled), ("events", "\n".join(stored)), ("webhook", repr(received))):
        assert secret not in text and "7731xq" not in text, (sink, text)
        assert "acct-***" in text and "listing failed for ***" in text, (sink, text)
    assert secret not in console and "7731xq" not in console, console
    signal, drifted = received
    got = signal["decision"]
    assert isinstance(got, dict)
    assert got["by_account"] == {"acct-***": 3, "acct-main": 4}  # before: {"acct-envPASS-7731xq": 3, ...}
    assert got["***"] == "keyed by the secret" and got["final_score"] == 61.5 and got["symbol"] == "ETHUSDTM"
    assert got["pairs"] == [["pair ***", 2]] and got["tags"] == ["tag ***"]
    assert got["error"] == "ValueError: ('login refused', {'passphrase': '***'})"
    assert drifted["differences"] == ["order 7 unknown: ***", "RuntimeError: listing failed for ***", ["size", 3]]
    assert "RuntimeError: listing failed for ***" in console  # the console line, with the text around the secret
    assert seen[1].differences[2] == ("size", 3)  # type: ignore[attr-defined]  # a tuple without a secret: kept
    assert decision["by_account"] == {f"acct-{secret}": 3, "acct-main": 4}  # the publisher's own dict untouched
