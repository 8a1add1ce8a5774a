"""A running simulator on loopback and a real client pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from exchange.rest import KucoinFuturesClient
from exchange.signing import Credentials
from exchange.simulator import SimulatorConfig, SimulatorServer

KEY, SECRET, PASSPHRASE = "test-key-1", "test-secret-1", "test-pass-1"


@pytest.fixture
async def sim(data_dir: Path) -> AsyncIterator[SimulatorServer]:
    server = SimulatorServer(
        SimulatorConfig(
            api_key=KEY, api_secret=SECRET, api_passphrase=PASSPHRASE, contracts_file=data_dir / "contracts.json"
        )
    )
    await server.start()
    server.set_price("ETHUSDTM", Decimal("2000.00"))
    server.set_price("XBTUSDTM", Decimal("90000.0"))
    yield server
    await server.stop()


@pytest.fixture
async def client(sim: SimulatorServer) -> AsyncIterator[KucoinFuturesClient]:
    async with KucoinFuturesClient(
        sim.rest_url, Credentials(KEY, SECRET, PASSPHRASE), backoff_base_s=0.01, backoff_cap_s=0.05
    ) as c:
        yield c
