"""An exchange that fails during start-up (unreachable, refusing a call) stops the runtime with one clear line and
exit 1, and whatever the failure, what reaches the log has passed the secret redactor."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


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
