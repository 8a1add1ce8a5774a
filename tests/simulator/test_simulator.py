"""The simulator on its own: state round trip, replay of real candles, standalone start, raw protocol checks."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from decimal import Decimal as D
from pathlib import Path

import aiohttp
import pytest

from engine.marketdata.candle_files import load_candles
from exchange.models import OrderRequest, OrderSide, OrderType
from exchange.rest import KucoinFuturesClient
from exchange.signing import Credentials
from exchange.simulator import SimulatorConfig, SimulatorServer
from exchange.simulator.replay import intrabar_path, replay_files
from exchange.ws import connect_url
from tests.conftest import ROOT
from tests.exchange.conftest import KEY, PASSPHRASE, SECRET


async def test_state_survives_save_and_load(
    sim: SimulatorServer, client: KucoinFuturesClient, tmp_path: Path, data_dir: Path
) -> None:
    await client.place_order(OrderRequest("ETHUSDTM", OrderSide.BUY, 5, leverage=5))
    resting = await client.place_order(
        OrderRequest("ETHUSDTM", OrderSide.SELL, 1, OrderType.LIMIT, D("2100.00"), reduce_only=True)
    )
    path = tmp_path / "state.json"
    sim.save_state(path)
    fresh = SimulatorServer(
        SimulatorConfig(
            api_key=KEY, api_secret=SECRET, api_passphrase=PASSPHRASE, contracts_file=data_dir / "contracts.json"
        )
    )
    fresh.load_state(path)
    await fresh.start()
    try:
        async with KucoinFuturesClient(fresh.rest_url, Credentials(KEY, SECRET, PASSPHRASE)) as other:
            assert (await other.position("ETHUSDTM")).lots == 5
            assert [o.id for o in await other.open_orders("ETHUSDTM")] == [resting.id]
            assert (await other.account_overview()).equity == (await client.account_overview()).equity
            fresh.set_price("ETHUSDTM", D("2100.00"))
            assert (await other.position("ETHUSDTM")).lots == 4
    finally:
        await fresh.stop()


async def test_replay_follows_the_file_and_keeps_candles(
    sim: SimulatorServer, data_dir: Path, client: KucoinFuturesClient
) -> None:
    small = data_dir
    candles = load_candles(small, "ETHUSDTM", "5min")
    seen: list[D] = []
    sim.state.listeners.append(lambda kind, d: seen.append(d["prices"].last) if kind == "ticker" else None)
    task = asyncio.create_task(replay_files(sim, small, ("ETHUSDTM",), "max"))
    while len(sim.candles.get(("ETHUSDTM", 5), [])) < 50:
        await asyncio.sleep(0)
    task.cancel()
    rows = await client.klines("ETHUSDTM", 5, candles[0].ts, candles[49].ts)
    assert rows[:50] == [[c.ts, c.open, c.high, c.low, c.close, c.volume] for c in candles[:50]]
    first = candles[0]
    assert seen[:4] == [D(repr(p)) for p in intrabar_path(first)]
    assert intrabar_path(first)[0] == first.open and intrabar_path(first)[-1] == first.close


async def test_raw_protocol_errors(sim: SimulatorServer) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(sim.rest_url + "/api/v1/nowhere") as r:
            assert r.status == 404 and (await r.json())["code"] == "404000"
        async with http.get(sim.rest_url + "/api/v1/positions") as r:
            assert r.status == 401 and (await r.json())["code"] == "400001"
        async with http.get(sim.rest_url + "/api/v1/timestamp") as r:
            body = await r.json()
            assert body["code"] == "200000" and abs(body["data"] - int(asyncio.get_running_loop().time())) > 0
            assert r.headers["gw-ratelimit-limit"] == "2000"


async def test_rate_limit_pool_exhaustion_answers_429(data_dir: Path) -> None:
    sim = SimulatorServer(SimulatorConfig(contracts_file=data_dir / "contracts.json", rate_limit_quota=5))
    await sim.start()
    try:
        async with aiohttp.ClientSession() as http:
            codes = []
            for _ in range(4):
                async with http.get(sim.rest_url + "/api/v1/timestamp") as r:
                    codes.append((r.status, r.headers.get("gw-ratelimit-reset") is not None))
        # Reference §3.3: the reset header is on every response, not only on the 429.
        assert codes[:2] == [(200, True), (200, True)] and codes[2] == (429, True)
    finally:
        await sim.stop()


@pytest.mark.skipif(sys.platform != "linux", reason="signals as on the VPS")
def test_standalone_simulator_starts_and_stops_cleanly(data_dir: Path, tmp_path: Path) -> None:
    """Its key, secret and passphrase come from SIM_API_* in the environment (they were --api-* arguments only,
    visible in ``ps`` and the shell's history): a client signing with them is served, and no warning is printed."""
    import os

    state = tmp_path / "sim.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIM_API_", "KUCOIN_API_"))}
    env |= {"SIM_API_KEY": "env-key", "SIM_API_SECRET": "env-secret-77", "SIM_API_PASSPHRASE": "env-pass-88"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "exchange.simulator",
            "--port",
            "0",
            "--data-dir",
            str(data_dir),
            "--symbols",
            "ETHUSDTM",
            "--speed",
            "max",
            "--state",
            str(state),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "simulator listening on http://127.0.0.1:" in line
        assert asyncio.run(_equity(line.split()[3], Credentials("env-key", "env-secret-77", "env-pass-88"))) == D(10000)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    assert proc.stderr is not None and "warning" not in proc.stderr.read()
    saved = json.loads(state.read_text())
    assert "ETHUSDTM" in saved["prices"]


async def _equity(url: str, credentials: Credentials) -> D:
    async with KucoinFuturesClient(url, credentials) as client:
        return (await client.account_overview()).equity


def test_simulator_credentials_from_the_environment_and_flags_warned(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """SIM_API_* first, then the bot's KUCOIN_API_* (environment, then the project's .env, so a paper bot on
    PAPER_EXCHANGE_URL matches); an --api-* flag still works but is warned about; none at all is a clear error."""
    from exchange.simulator import __main__ as cli

    for name in ("KEY", "SECRET", "PASSPHRASE"):
        monkeypatch.delenv(f"SIM_API_{name}", raising=False)
        monkeypatch.delenv(f"KUCOIN_API_{name}", raising=False)
    env_file = tmp_path / ".env"
    monkeypatch.setattr(cli, "ENV_FILE", env_file)
    with pytest.raises(SystemExit) as exit_info:
        cli.parse([])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "set SIM_API_KEY, SIM_API_SECRET, SIM_API_PASSPHRASE in the environment" in err, err

    env_file.write_text("KUCOIN_API_KEY=file-key\nKUCOIN_API_SECRET='file secret'\nKUCOIN_API_PASSPHRASE=file-pass\n")
    monkeypatch.setenv("KUCOIN_API_SECRET", "bot-secret")
    monkeypatch.setenv("SIM_API_PASSPHRASE", "sim-pass")
    args = cli.parse([])
    assert (args.api_key, args.api_secret, args.api_passphrase) == ("file-key", "bot-secret", "sim-pass")
    assert capsys.readouterr().err == ""

    args = cli.parse(["--api-secret", "flag-secret"])
    assert (args.api_key, args.api_secret, args.api_passphrase) == ("file-key", "flag-secret", "sim-pass")
    err = capsys.readouterr().err
    assert err.startswith("warning: --api-secret on the command line is visible in ps and the shell's history; ")
    assert "flag-secret" not in err and err.count("warning") == 1, err


async def test_private_topics_need_a_private_token(sim: SimulatorServer) -> None:
    """Reference §5.3: a private topic on a public token is refused with 403 ("login required"), whatever the
    privateChannel flag says. The simulator used to answer 401 (which a client takes for an expired token) and,
    without the flag, subscribed the public connection and sent it the account's private pushes."""
    async with aiohttp.ClientSession() as http:
        async with http.post(sim.rest_url + "/api/v1/bullet-public") as resp:
            bullet = (await resp.json())["data"]
        url = connect_url(bullet["instanceServers"][0]["endpoint"], bullet["token"], "1")
        async with http.ws_connect(url) as ws:
            assert (await ws.receive_json())["type"] == "welcome"
            for n, flag in enumerate((True, False)):
                await ws.send_json(
                    {"id": str(n), "type": "subscribe", "topic": "/contractMarket/tradeOrders", "privateChannel": flag}
                )
                answer = await ws.receive_json()
                assert (answer["id"], answer["type"], answer["code"]) == (str(n), "error", 403)


async def test_an_opening_order_needs_its_leverage(sim: SimulatorServer, client: KucoinFuturesClient) -> None:
    """Reference §4.4.1 and §6.10 step 8: ``leverage`` is required unless the order closes. The simulator took a
    missing leverage as 1x, so a client that forgot it on entries would have passed here and failed on KuCoin."""
    from exchange.errors import InvalidRequestError

    with pytest.raises(InvalidRequestError, match="leverage"):
        await client.place_order(OrderRequest("ETHUSDTM", OrderSide.BUY, 2))
    await client.place_order(OrderRequest("ETHUSDTM", OrderSide.BUY, 2, leverage=5))
    closed = await client.place_order(OrderRequest("ETHUSDTM", OrderSide.SELL, 2, reduce_only=True))
    assert closed.filled_lots == 2  # a close needs none


async def test_a_push_to_a_socket_closed_under_it_leaves_no_unretrieved_task_error(sim: SimulatorServer) -> None:
    """A paper bot stopped during a fast replay ended its log with 'Task exception was never retrieved' and an
    aiohttp traceback: the simulator's push to the socket the bot had just closed failed in a task nobody awaited."""
    import gc

    reported: list[str] = []
    asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: reported.append(str(ctx.get("message"))))
    async with aiohttp.ClientSession() as http:
        async with http.post(sim.rest_url + "/api/v1/bullet-public") as resp:
            bullet = (await resp.json())["data"]
        url = connect_url(bullet["instanceServers"][0]["endpoint"], bullet["token"], "1")
        async with http.ws_connect(url) as ws:
            assert (await ws.receive_json())["type"] == "welcome"
            await ws.send_json({"id": "1", "type": "subscribe", "topic": "/contractMarket/tickerV2:ETHUSDTM"})
            assert (await ws.receive_json())["type"] == "ack"
            (server_side,) = sim.sockets
            server_side._req.transport.abort()  # type: ignore[union-attr]  # the connection drops under the push
            pushed = sim.pushed
            sim.set_price("ETHUSDTM", D("2001.00"))
            assert sim.pushed > pushed  # the push was attempted on the dying socket
            await asyncio.sleep(0.1)
    gc.collect()  # an unretrieved task error is reported when the task is collected
    await asyncio.sleep(0)
    assert reported == []
