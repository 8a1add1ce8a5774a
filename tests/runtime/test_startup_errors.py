"""An exchange that fails during start-up (unreachable, refusing a call) stops the runtime with one clear line and
exit 1, and whatever the failure, what reaches the log has passed the secret redactor."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from engine.config.errors import EX_CONFIG
from tests.conftest import ROOT, serve_on_loopback


def test_exchange_failing_after_connect_then_one_error_line_no_traceback(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BOT_", "KUCOIN_", "TELEGRAM_", "LIVE_"))}
    env.update(
        BOT_MODE="paper",
        PAPER_EXCHANGE_URL="http://127.0.0.1:9",  # a simulator the trader forgot to start
        KUCOIN_API_KEY="sim-key",
        KUCOIN_API_SECRET="sim-secret-XYZ123",
        KUCOIN_API_PASSPHRASE="sim-pass-XYZ123",
        DB_PATH=str(tmp_path / "e.sqlite"),
        HTTP_PORT="0",
    )
    proc = subprocess.run(
        [sys.executable, "-m", "engine.runtime"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and "127.0.0.1:9" in errors[0], proc.stderr[-3000:]
    assert "XYZ123" not in proc.stderr + proc.stdout


def test_bad_replay_speed_on_the_command_line_then_one_line_not_a_silent_idle_bot(
    tmp_path: Path, data_dir: Path
) -> None:
    """./start.sh --replay DIR --speed abc passed the value straight through: the bot came up (HTTP, 'ready') while
    the replay had died on it, so it sat there trading nothing, forever."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BOT_", "KUCOIN_", "TELEGRAM_", "LIVE_"))}
    env.update(DB_PATH=str(tmp_path / "e.sqlite"), HTTP_PORT="0", KILL_SWITCH_FILE=str(tmp_path / "KILL"))
    for speed in ("abc", "0", "-5"):
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "engine.runtime", "--replay", str(data_dir), "--speed", speed],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise AssertionError(f"--speed {speed}: the bot started and kept running") from None
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == EX_CONFIG and len(lines) == 1, proc.stderr[-2000:]
        assert "--speed" in lines[0] and "positive number or 'max'" in lines[0]
        assert not (tmp_path / "e.sqlite").exists()


def test_strategy_switches_the_runtime_does_not_implement_refuse_to_start(tmp_path: Path) -> None:
    """partialTakeProfitEnabled=true and applyToLiveScore=true were accepted and silently ignored: the bot traded
    another strategy than the one configured (no partial exits, no micro score in the live score)."""
    raw = json.loads((ROOT / "docs" / "STRATEGY_CONFIG.json").read_text())
    raw["riskManagement"]["partialTakeProfitEnabled"] = True
    raw["microstructure"]["applyToLiveScore"] = True
    raw["riskManagement"]["marginMode"] = "cross"
    cfg_path = tmp_path / "strategy.json"
    cfg_path.write_text(json.dumps(raw))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BOT_", "KUCOIN_", "TELEGRAM_", "LIVE_"))}
    env.update(STRATEGY_CONFIG_PATH=str(cfg_path), DB_PATH=str(tmp_path / "e.sqlite"), HTTP_PORT="0")
    proc = subprocess.run(
        [sys.executable, "-m", "engine.runtime"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == EX_CONFIG, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines() == [
        "config error: not implemented by the trading runtime: riskManagement.partialTakeProfitEnabled, "
        "microstructure.applyToLiveScore, riskManagement.marginMode cross (isolated only); change them in the "
        "strategy config"
    ]
    assert not (tmp_path / "e.sqlite").exists()  # refused before anything was opened


async def test_a_start_refused_by_the_exchange_never_prints_a_secret_the_answer_echoes(tmp_path: Path) -> None:
    """'cannot start: KuCoin answered ...' left as a SystemExit message, past the redactor the other start-up errors
    pass: a gateway answering the key check with 'invalid KC-API-KEY <key>' printed the key to stderr (and so to the
    run log) as 'error: cannot start: KuCoin answered InvalidRequestError: GET /api/v1/user/api-key: ... <key>'."""
    import asyncio
    import time

    from aiohttp import web

    async def timestamp(request: web.Request) -> web.Response:
        return web.json_response({"code": "200000", "data": int(time.time() * 1000)})

    async def api_key(request: web.Request) -> web.Response:
        msg = f"invalid KC-API-KEY {request.headers.get('KC-API-KEY')}"
        return web.json_response({"code": "400003", "msg": msg}, status=401)

    app = web.Application()
    app.router.add_get("/api/v1/timestamp", timestamp)
    app.router.add_get("/api/v1/user/api-key", api_key)
    runner, port = await serve_on_loopback(app)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BOT_", "KUCOIN_", "TELEGRAM_", "LIVE_"))}
    env.update(
        BOT_MODE="shadow",
        KUCOIN_REST_URL=f"http://127.0.0.1:{port}",
        KUCOIN_SPOT_REST_URL=f"http://127.0.0.1:{port}",
        KUCOIN_API_KEY="key-ECHOED-4711",
        KUCOIN_API_SECRET="secret-XYZ123",
        KUCOIN_API_PASSPHRASE="pass-XYZ123",
        DB_PATH=str(tmp_path / "e.sqlite"),
        HTTP_PORT="0",
    )
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "engine.runtime",
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    finally:
        await runner.cleanup()
    stderr = err.decode()
    assert proc.returncode == 1, stderr[-3000:]
    errors = [line for line in stderr.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and "cannot start" in errors[0] and "invalid KC-API-KEY" in errors[0], stderr[-3000:]
    assert "ECHOED-4711" not in stderr + out.decode() and "XYZ123" not in stderr, stderr[-3000:]
