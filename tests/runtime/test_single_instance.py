"""One bot per database: a second ``python -m engine.runtime`` on the same DB_PATH (systemd plus ./start.sh, or a
``./start.sh --foreground`` in another terminal) must refuse at once with one line, and leave the first alone."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from engine.config.errors import EX_CONFIG
from tests.conftest import ROOT
from tests.runtime.test_paper_end_to_end import Bot


def _env(db: Path, kill_file: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BOT_", "KUCOIN_", "TELEGRAM_", "LIVE_"))}
    env.update(DB_PATH=str(db), HTTP_PORT="0", KILL_SWITCH_FILE=str(kill_file), SYMBOLS="ETHUSDTM")
    return env


def _wait_live(port: int, bot: Bot, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert bot.proc.poll() is None, bot.output()[-2000:]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/live", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("the first bot never answered /health/live")


def test_second_bot_on_the_same_database_refuses_with_one_line(tmp_path: Path, data_dir: Path) -> None:
    db = tmp_path / "state dir" / "enygma.sqlite"
    args = ["--replay", str(data_dir), "--speed", "1"]
    # both on HTTP_PORT=0, the first's port read from its log: ports picked beforehand could be taken meanwhile
    first = Bot(args, _env(db, tmp_path / "KILL"))
    try:
        _wait_live(first.port(), first)
        second = subprocess.Popen(  # its stderr alone: it must be one line
            [sys.executable, "-m", "engine.runtime", *args],
            cwd=ROOT,
            env=_env(db, tmp_path / "KILL"),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            _, err = second.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            second.kill()
            second.communicate()
            raise AssertionError("a second bot started on the same database") from None
        assert second.returncode == EX_CONFIG
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1, err
        assert "already running" in lines[0] and str(db) in lines[0] and str(first.proc.pid) in lines[0]
        assert first.proc.poll() is None, "the first bot must keep running"
    finally:
        first.stop(30)
