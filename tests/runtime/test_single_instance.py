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
from tests.runtime.test_paper_end_to_end import free_port


def _start(db: Path, port: int, data_dir: Path, kill_file: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BOT_", "KUCOIN_", "TELEGRAM_", "LIVE_"))}
    env.update(DB_PATH=str(db), HTTP_PORT=str(port), KILL_SWITCH_FILE=str(kill_file), SYMBOLS="ETHUSDTM")
    return subprocess.Popen(
        [sys.executable, "-m", "engine.runtime", "--replay", str(data_dir), "--speed", "1"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_live(port: int, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/live", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("the first bot never answered /health/live")


def test_second_bot_on_the_same_database_refuses_with_one_line(tmp_path: Path, data_dir: Path) -> None:
    db = tmp_path / "state dir" / "enygma.sqlite"
    first_port, second_port = free_port(), free_port()
    first = _start(db, first_port, data_dir, tmp_path / "KILL")
    try:
        _wait_live(first_port, first)
        second = _start(db, second_port, data_dir, tmp_path / "KILL")
        try:
            _, err = second.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            second.kill()
            second.communicate()
            raise AssertionError("a second bot started on the same database") from None
        assert second.returncode == EX_CONFIG
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1, err
        assert "already running" in lines[0] and str(db) in lines[0] and str(first.pid) in lines[0]
        assert first.poll() is None, "the first bot must keep running"
    finally:
        first.terminate()
        first.communicate(timeout=30)
