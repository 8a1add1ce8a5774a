"""An engine wired to a real simulator over loopback, a real SQLite file and the real event bus."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest

from engine.config import default_strategy_config
from engine.config.settings import Settings
from engine.events import Event, EventBus
from engine.risk.contract import load_contract_specs
from engine.runtime.engine import EngineOptions, TradingEngine
from exchange.rest import KucoinFuturesClient
from exchange.simulator import SimulatorServer
from storage.db import Database
from storage.repos import Approvals, EventLog, Intents, Positions, RetryQueue
from tests.exchange.conftest import KEY, PASSPHRASE, SECRET, client, sim

__all__ = ["client", "sim"]


def live_settings(sim: SimulatorServer, tmp_path: Path, **overrides: object) -> Settings:
    """Live-mode settings against the simulator (its REST for both futures and spot, the test credentials), the
    state under ``tmp_path`` and the HTTP port the system's choice (a port picked beforehand can be taken)."""
    values: dict[str, object] = {
        "bot_mode": "live",
        "symbols": ["ETHUSDTM"],
        "kucoin_rest_url": sim.rest_url,
        "kucoin_spot_rest_url": sim.rest_url,
        "kucoin_api_key": KEY,
        "kucoin_api_secret": SECRET,
        "kucoin_api_passphrase": PASSPHRASE,
        "db_path": tmp_path / "e.sqlite",
        "kill_switch_file": tmp_path / "KILL",
        "http_port": 0,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


@dataclass
class Rig:
    engine: TradingEngine
    sim: SimulatorServer
    client: KucoinFuturesClient
    db: Database
    bus: EventBus
    events: list[Event]
    log: EventLog

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]


async def make_engine(
    sim: SimulatorServer, client: KucoinFuturesClient, db: Database, data_dir: Path, **opts: object
) -> Rig:
    bus = EventBus()
    events: list[Event] = []
    log = EventLog(db)

    async def record(e: Event) -> None:
        events.append(e)

    bus.subscribe("test", record)
    bus.subscribe("storage", log.append)
    await bus.start()
    specs = load_contract_specs(data_dir / "contracts.json")
    engine = TradingEngine(
        default_strategy_config(),
        client,
        {"ETHUSDTM": specs["ETHUSDTM"]},
        bus,
        Positions(db),
        Intents(db),
        RetryQueue(db),
        EngineOptions(**opts),  # type: ignore[arg-type]
        equity=Decimal(10000),
        approvals=Approvals(db),
    )
    return Rig(engine, sim, client, db, bus, events, log)


@pytest.fixture
async def rig(sim: SimulatorServer, client: KucoinFuturesClient, tmp_path: Path, data_dir: Path) -> AsyncIterator[Rig]:
    async with Database(tmp_path / "enygma.sqlite") as db:
        r = await make_engine(sim, client, db, data_dir)
        yield r
        await r.bus.stop()
