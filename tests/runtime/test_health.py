"""/health/ready and deploy/healthcheck.sh: every readiness check, including the age of the last signed call."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from engine.runtime.http import Health, Metrics, build_app
from tests.conftest import ROOT

NOW = 1_800_000_000_000


def healthy() -> Health:
    return Health(last_candle_ms=NOW - 60_000, stream_connected=True, last_signed_call_ms=NOW - 20_000)


def test_ready_when_every_check_passes() -> None:
    ok, checks = healthy().ready(NOW)
    assert ok
    assert checks["signed_calls_ok"] is True
    assert checks["last_signed_call_age_s"] == 20.0 and checks["last_candle_age_s"] == 60.0


@pytest.mark.parametrize(
    ("signed_ms", "ok"),
    [
        (NOW - 300_000, True),  # exactly the 5-minute limit
        (NOW - 300_001, False),
        (0, False),  # no signed call has succeeded since start
    ],
)
def test_a_stale_signed_call_makes_the_bot_not_ready(signed_ms: int, ok: bool) -> None:
    h = healthy()
    h.last_signed_call_ms = signed_ms
    ready, checks = h.ready(NOW)
    assert ready is ok and checks["signed_calls_ok"] is ok
    assert checks["last_signed_call_age_s"] == (None if signed_ms == 0 else (NOW - signed_ms) / 1000)


@pytest.fixture
async def served() -> AsyncIterator[tuple[Health, int]]:
    health = Health()

    async def approver(approval_id: str, action: str) -> str:
        return "expired"

    runner = web.AppRunner(build_app(Metrics(), health, lambda: {}, approver))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = next(a[1] for a in runner.addresses if isinstance(a, tuple))
    try:
        yield health, port
    finally:
        await runner.cleanup()


async def healthcheck(port: int, *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        str(ROOT / "deploy" / "healthcheck.sh"),
        *args,
        env={**os.environ, "HTTP_PORT": str(port)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out = (await asyncio.wait_for(proc.communicate(), 30))[0].decode()
    assert proc.returncode is not None
    return proc.returncode, out


async def test_healthcheck_script_passes_a_healthy_bot_and_names_what_is_wrong(served: tuple[Health, int]) -> None:
    import time

    health, port = served
    now = int(time.time() * 1000)
    health.last_candle_ms, health.stream_connected, health.last_signed_call_ms = now - 30_000, True, now - 10_000
    code, out = await healthcheck(port)
    assert code == 0, out
    assert out.startswith("healthy: last candle 3")  # 30 s old when set, and the script takes a moment
    health.last_signed_call_ms = now - 600_000  # keys revoked or the exchange unreachable for 10 minutes
    code, out = await healthcheck(port)
    assert code == 1 and out.strip() == "unhealthy: signed_calls_ok"
    health.stream_connected = False
    code, out = await healthcheck(port)
    assert code == 1 and out.strip() == "unhealthy: stream_connected, signed_calls_ok"
    code, out = await healthcheck(port, "--live")
    assert code == 0  # --live only asks whether it answers


async def test_healthcheck_script_asks_the_port_set_in_env_as_the_bot_does(
    served: tuple[Health, int], tmp_path: Path
) -> None:
    """systemd runs the health check without the bot's environment: with HTTP_PORT only in .env it used to ask 8000,
    fail, and have the timer restart a healthy bot every minute."""
    _, port = served
    project = tmp_path / "enygma"
    (project / "deploy").mkdir(parents=True)
    shutil.copy(ROOT / "deploy" / "healthcheck.sh", project / "deploy" / "healthcheck.sh")
    (project / ".venv").symlink_to(ROOT / ".venv")
    (project / ".env").write_text(f'export http_port="{port}"\n')
    env = {k: v for k, v in os.environ.items() if k != "HTTP_PORT"}
    proc = await asyncio.create_subprocess_exec(
        str(project / "deploy" / "healthcheck.sh"),
        "--live",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out = (await asyncio.wait_for(proc.communicate(), 30))[0].decode()
    assert proc.returncode == 0, out
    (project / ".env").write_text("HTTP_PORT=1\n")  # nothing listens there
    proc = await asyncio.create_subprocess_exec(
        str(project / "deploy" / "healthcheck.sh"),
        "--live",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out = (await asyncio.wait_for(proc.communicate(), 30))[0].decode()
    assert proc.returncode == 1
    assert out.startswith("unhealthy: http://127.0.0.1:1/health/live:"), out
    assert "Traceback" not in out and len(out.strip().splitlines()) == 1
