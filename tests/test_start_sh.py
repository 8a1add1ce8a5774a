"""start.sh as a trader meets it: help, unknown commands, and the live confirmation that a script cannot skip."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.conftest import ROOT

START = ROOT / "start.sh"


def _run(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("BOT_", "KUCOIN_", "LIVE_", "TELEGRAM_"))}
    return subprocess.run(
        ["bash", str(START), *args],
        cwd=cwd,
        env={**base, **(env or {})},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_help_lists_every_command() -> None:
    proc = _run("--help")
    assert proc.returncode == 0
    for word in (
        "test",
        "backtest",
        "fetch-candles",
        "stop",
        "status",
        "--replay",
        "--speed",
        "--foreground",
        "check-config",
    ):
        assert word in proc.stdout


def test_unknown_command_exits_2_with_usage() -> None:
    proc = _run("frobnicate")
    assert proc.returncode == 2
    assert "unknown command: frobnicate" in proc.stderr


def test_live_armed_without_terminal_is_refused_and_nothing_starts() -> None:
    env = {
        "BOT_MODE": "live",
        "LIVE_TRADING_ARMED": "true",
        "KUCOIN_API_KEY": "k",
        "KUCOIN_API_SECRET": "s",
        "KUCOIN_API_PASSPHRASE": "p",
    }
    proc = _run(env=env)
    assert proc.returncode == 1
    assert "LIVE TRADING WITH REAL MONEY" in proc.stdout
    assert "needs an interactive confirmation" in proc.stderr
    assert not (ROOT / "run" / "enygma.pid").exists()


def test_shadow_without_keys_fails_with_one_line() -> None:
    proc = _run(env={"BOT_MODE": "shadow"})
    assert proc.returncode == 1
    assert "BOT_MODE=shadow needs KUCOIN_API_KEY" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_replay_with_missing_dir_is_refused() -> None:
    proc = _run("--replay", "/nonexistent/dir")
    assert proc.returncode == 2
    assert "replay directory not found" in proc.stderr


def test_status_when_not_running() -> None:
    proc = _run("status")
    assert proc.returncode == 3
    assert "not running" in proc.stdout
