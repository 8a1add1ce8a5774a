"""A key that can move money out is refused, whatever spelling or shape KuCoin uses for the permission (the API
reference marks the exact string as uncertain), and the refusal at start is one line, not a traceback."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from engine.config.errors import EX_CONFIG
from exchange.errors import PermissionRefusedError
from exchange.rest import KucoinFuturesClient
from exchange.signing import Credentials
from exchange.simulator import SimulatorServer
from tests.conftest import ROOT
from tests.exchange.conftest import KEY, PASSPHRASE, SECRET

MONEY_MOVERS = [
    ("General", "Futures", "Transfer"),
    ("General", "Futures", "TRANSFER"),
    ("General", "Futures", "Withdrawal"),
    ("General", "Futures", "withdraw"),
    ("General", "Futures", "Withdrawals"),
    ("General", "Futures", "InnerTransfer"),
    ("General", "Futures", "FlexTransfers"),
    ("General", "Futures", "Flex Transfers"),
    ("General", "Futures", " Inner_Transfer "),
    ("General Futures Transfer",),  # separated by spaces instead of commas
    ("General;Futures;Withdrawal",),
]


def _with_permissions(sim: SimulatorServer, perms: tuple[str, ...]) -> None:
    sim.keys[KEY] = sim.keys[KEY].__class__(KEY, SECRET, PASSPHRASE, perms)


@pytest.mark.parametrize("perms", MONEY_MOVERS, ids=["|".join(p) for p in MONEY_MOVERS])
async def test_key_that_can_move_money_is_refused(
    sim: SimulatorServer, client: KucoinFuturesClient, perms: tuple[str, ...]
) -> None:
    _with_permissions(sim, perms)
    with pytest.raises(PermissionRefusedError, match=r"(?i)transfer|withdraw"):
        await client.check_key_permissions()


async def test_trade_only_key_is_accepted_in_any_case(sim: SimulatorServer, client: KucoinFuturesClient) -> None:
    _with_permissions(sim, ("general", " FUTURES "))
    assert [p.lower() for p in await client.check_key_permissions()] == ["general", "futures"]


async def test_a_key_usable_from_any_ip_is_warned_about(sim: SimulatorServer, client: KucoinFuturesClient) -> None:
    """Reference §7: warn when the key has no IP restriction (a leaked key then trades from anywhere)."""
    from structlog.testing import capture_logs

    with capture_logs() as restricted:
        await client.check_key_permissions()
    sim.config.ip_whitelist = ""
    with capture_logs() as open_key:
        assert await client.check_key_permissions() == ["General", "Futures"]  # a warning, not a refusal
    assert [e["event"] for e in restricted if e["log_level"] == "warning"] == []
    assert [e["event"] for e in open_key if e["log_level"] == "warning"] == ["api_key.no_ip_restriction"]


@pytest.fixture
async def list_shaped_exchange() -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """An exchange answering the api-key endpoint with ``permission`` as a JSON list, not a comma string."""
    answer: dict[str, Any] = {"permission": ["General", "Futures", "Transfer"]}

    async def api_key(_: web.Request) -> web.Response:
        return web.json_response({"code": "200000", "data": answer})

    app = web.Application()
    app.router.add_get("/api/v1/user/api-key", api_key)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}", answer
    await runner.cleanup()


async def test_permission_as_a_list_is_read_too(list_shaped_exchange: tuple[str, dict[str, Any]]) -> None:
    url, answer = list_shaped_exchange
    async with KucoinFuturesClient(url, Credentials(KEY, SECRET, PASSPHRASE), max_attempts=1) as c:
        with pytest.raises(PermissionRefusedError, match="Transfer"):
            await c.check_key_permissions()
        answer["permission"] = ["General", "Futures"]
        assert await c.check_key_permissions() == ["General", "Futures"]


async def test_shadow_start_with_a_transfer_key_stops_with_one_line(sim: SimulatorServer, tmp_path: Path) -> None:
    _with_permissions(sim, ("General", "Futures", "Withdrawal"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BOT_", "KUCOIN_", "TELEGRAM_", "LIVE_"))}
    env.update(
        BOT_MODE="shadow",
        KUCOIN_API_KEY=KEY,
        KUCOIN_API_SECRET=SECRET,
        KUCOIN_API_PASSPHRASE=PASSPHRASE,
        KUCOIN_REST_URL=sim.rest_url,
        KUCOIN_SPOT_REST_URL=sim.rest_url,
        DB_PATH=str(tmp_path / "e.sqlite"),
        HTTP_PORT="0",
        SYMBOLS="ETHUSDTM",
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "engine.runtime",
        cwd=ROOT,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    except TimeoutError:
        proc.kill()
        await proc.communicate()
        raise AssertionError("a bot with a withdrawal key kept running") from None
    text = err.decode()
    assert proc.returncode == EX_CONFIG, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
    errors = [line for line in text.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and "Withdrawal" in errors[0], text[-3000:]
    assert SECRET not in text + out.decode() and PASSPHRASE not in text + out.decode()
    assert not (tmp_path / "e.sqlite").exists(), "nothing may be written with a refused key"
