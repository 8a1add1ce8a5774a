"""An approval card journaled before a crash and sent late by the restart's catch-up still carries its buttons. The
real engine against the simulator, a real SQLite file and journal, the real bot against the fake Bot API server:
its Approve, pressed after the card's expiry, must trade nothing."""

from __future__ import annotations

from pathlib import Path

from engine.config.settings import Settings
from engine.runtime.control import EngineControl
from exchange.rest import KucoinFuturesClient
from exchange.simulator import SimulatorServer
from storage.db import Database
from storage.journal import EventJournal, journal_path_for
from storage.repos import Settings as SavedSwitches
from storage.repos import TelegramCursors
from tests.bot.fake_telegram import FakeTelegram
from tests.bot.test_cockpit import OWNER
from tests.bot.test_cockpit_faults import build, drained
from tests.exchange.conftest import client, sim
from tests.runtime.conftest import make_engine
from tests.runtime.test_engine import long_decision

__all__ = ["client", "sim"]


async def test_a_card_sent_late_after_its_expiry_places_no_order_when_approved(
    tg: FakeTelegram, sim: SimulatorServer, client: KucoinFuturesClient, tmp_path: Path, data_dir: Path
) -> None:
    path = tmp_path / "enygma.sqlite"
    async with Database(path) as db:
        journal = EventJournal(db, journal_path_for(path))
        await journal.open()
        first = await make_engine(sim, client, db, data_dir, control="manual")
        first.bus.recorder = journal.record
        await TelegramCursors(db).advance((OWNER,), journal.last_seq)  # the run before had Telegram
        approval_id = await first.engine.request_approval("ETHUSDTM", long_decision())
        assert approval_id is not None  # journaled; the process died before its message reached the outbox
        card = await first.engine.approvals.get(approval_id)  # type: ignore[union-attr]
        assert card is not None
        await first.bus.stop()
        await journal.flush()

        second = await make_engine(sim, client, db, data_dir, control="manual")
        second.bus.recorder = journal.record
        second.engine.clock = lambda: int(card["expires_ms"]) + 60_000  # the restart came a minute after expiry
        settings = Settings(_env_file=None)
        control = EngineControl(second.engine, settings, saved=SavedSwitches(db))
        svc = build(tg, db, control)  # type: ignore[arg-type]  # the real engine's control, not the test stand-in
        second.bus.subscribe_sequenced("telegram", svc.notify)
        assert await svc.catch_up(journal.last_seq, journal.last_seq) == 1
        await second.bus.start_new()
        await svc.start()
        try:
            await drained(svc)
            [late] = tg.sent()
            assert "Approve LONG ETHUSDTM?" in late["text"] and "delivered after a restart" in late["text"]
            buttons = late["reply_markup"]["inline_keyboard"][0]
            assert buttons[0]["callback_data"] == f"ap:{approval_id}:y"
            tg.push_callback(OWNER, buttons[0]["callback_data"])
            [answer] = await tg.wait_for("answerCallbackQuery")
            assert answer.get("text", "").startswith("expired")
            await second.bus.drain()
            await drained(svc)
        finally:
            await svc.stop()
            await second.bus.stop()
        assert (await client.position("ETHUSDTM")).lots == 0
        assert not sim.state.orders  # nothing was sent to the exchange
        stored = await second.engine.approvals.get(approval_id)  # type: ignore[union-attr]
        assert stored is not None and stored["state"] == "EXPIRED"
        assert [e.kind for e in second.events] == ["approval_resolved"]
        await journal.close()
