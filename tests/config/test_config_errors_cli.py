"""A bad value in the environment or .env stops ``./start.sh check-config`` and ``python -m engine.runtime`` with
ONE line naming the key and a non-zero exit: never a traceback, never a half-started bot."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.config.errors import EX_CONFIG
from tests.conftest import ROOT


def _env(extra: dict[str, str]) -> dict[str, str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("BOT_", "KUCOIN_", "LIVE_", "TELEGRAM_", "SYMBOLS", "WEBHOOK_", "HTTP_", "DB_PATH"))
    }
    return {**base, **extra}


def _cli(module: str, extra: dict[str, str], cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module],
        cwd=cwd,
        env=_env(extra),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _assert_one_line(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode == EX_CONFIG, (proc.returncode, proc.stdout, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


BAD_ENV = [
    ({"TELEGRAM_NOTIFY_LEVELS": '{"stop_moved": "silent"'}, ["TELEGRAM_NOTIFY_LEVELS", "JSON"]),
    ({"TELEGRAM_NOTIFY_LEVELS": "[1, 2]"}, ["TELEGRAM_NOTIFY_LEVELS"]),
    ({"SYMBOLS": "ETHUSDTM,XBTUSDTM,ETHUSDTM"}, ["SYMBOLS", "duplicate", "ETHUSDTM"]),
    ({"SYMBOLS": "ethusdtm,ETHUSDTM"}, ["SYMBOLS", "duplicate", "ETHUSDTM"]),
    ({"SYMBOLS": "ETH USDTM"}, ["SYMBOLS", "ETH USDTM"]),
    ({"SYMBOLS": "ETHUSDTM;XBTUSDTM"}, ["SYMBOLS", "ETHUSDTM;XBTUSDTM"]),
    (
        {"BOT_MODE": "shadow", "KUCOIN_API_KEY": "  ", "KUCOIN_API_SECRET": "s3", "KUCOIN_API_PASSPHRASE": "p3"},
        ["KUCOIN_API_KEY"],
    ),
    (
        {"TELEGRAM_BOT_TOKEN": " ", "TELEGRAM_ALLOWED_USER_IDS": "1", "TELEGRAM_CHAT_IDS": "1"},
        ["TELEGRAM_BOT_TOKEN"],
    ),
]


@pytest.mark.parametrize("module", ["engine.config", "engine.runtime"])
@pytest.mark.parametrize(("extra", "needles"), BAD_ENV, ids=[str(e) for e, _ in BAD_ENV])
def test_bad_environment_value_then_one_line_and_exit_1(
    module: str, extra: dict[str, str], needles: list[str], tmp_path: Path
) -> None:
    proc = _cli(module, {**extra, "DB_PATH": str(tmp_path / "e.sqlite")})
    _assert_one_line(proc, *needles)
    assert not (tmp_path / "e.sqlite").exists(), "nothing may start on a bad config"


@pytest.mark.parametrize("name", ["KUCOIN_API_KEY", "KUCOIN_API_SECRET", "KUCOIN_API_PASSPHRASE", "TELEGRAM_BOT_TOKEN"])
def test_bad_secret_value_then_named_but_never_echoed(name: str) -> None:
    value = " 123456:AAsecretVALUE-that-must-not-print"
    proc = _cli("engine.config", {name: value, "TELEGRAM_ALLOWED_USER_IDS": "1", "TELEGRAM_CHAT_IDS": "1"})
    _assert_one_line(proc, name)
    assert "secretVALUE" not in proc.stderr + proc.stdout


HOOK = "https://hooks.slack.com/services/T01/B02/hookTOKENzz9"


def test_webhook_url_is_a_secret_in_check_config_repr_and_logs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    proc = _cli("engine.config", {"WEBHOOK_URL": HOOK})
    assert proc.returncode == 0, proc.stderr
    assert "hookTOKENzz9" not in proc.stdout + proc.stderr
    assert '"webhook_url": "***"' in proc.stdout

    from engine.config.settings import load_settings
    from engine.logging import configure_logging

    monkeypatch.setenv("WEBHOOK_URL", HOOK)
    s = load_settings(Path("/nonexistent/.env"))
    assert "hookTOKENzz9" not in repr(s) + str(s) + repr(s.redacted())
    configure_logging(secrets=s.secret_values(), json_output=True)
    import structlog

    structlog.get_logger("t").warning("webhook.failed", error=f"InvalidURL: {HOOK}")
    assert "hookTOKENzz9" not in capsys.readouterr().err


def test_webhook_url_that_is_not_http_then_one_line_without_the_value() -> None:
    proc = _cli("engine.config", {"WEBHOOK_URL": "hooks.slack.com/services/T01/B02/hookTOKENzz9"})
    _assert_one_line(proc, "WEBHOOK_URL", "http")
    assert "hookTOKENzz9" not in proc.stderr


@pytest.mark.parametrize(
    ("name", "url"),
    [
        ("KUCOIN_REST_URL", "http://api-futures.kucoin.com"),
        ("KUCOIN_SPOT_REST_URL", "http://api.kucoin.com"),
        ("TELEGRAM_API_BASE_URL", "http://api.telegram.org"),
        ("KUCOIN_REST_URL", "api-futures.kucoin.com"),
    ],
)
def test_url_that_would_send_keys_in_clear_text_then_one_line(name: str, url: str) -> None:
    """Signed KuCoin requests carry the key and the signed passphrase, Telegram's URLs carry the bot token: plain
    http to anything but this machine would hand them to whoever is on the path."""
    proc = _cli("engine.config", {name: url})
    _assert_one_line(proc, name, "https")


def test_plain_http_to_loopback_is_fine_for_a_local_simulator() -> None:
    proc = _cli(
        "engine.config", {"KUCOIN_REST_URL": "http://127.0.0.1:8900", "TELEGRAM_API_BASE_URL": "http://localhost:9"}
    )
    assert proc.returncode == 0, proc.stderr


def test_check_config_refuses_a_switch_the_runtime_does_not_implement(tmp_path: Path) -> None:
    import json

    raw = json.loads((ROOT / "docs" / "STRATEGY_CONFIG.json").read_text())
    raw["riskManagement"]["partialTakeProfitEnabled"] = True
    path = tmp_path / "strategy.json"
    path.write_text(json.dumps(raw))
    proc = _cli("engine.config", {"STRATEGY_CONFIG_PATH": str(path)})
    _assert_one_line(proc, "config error: ", "riskManagement.partialTakeProfitEnabled", "not implemented")
    assert "applyToLiveScore" not in proc.stderr  # only what is on is named


def test_check_config_piped_into_head_is_no_traceback() -> None:
    """'./start.sh check-config | head -3' (the effective settings are ~40 lines) ended in a BrokenPipeError."""
    proc = subprocess.run(
        f"'{sys.executable}' -m engine.config | true",  # the reader is gone before the first line (as head's can be)
        shell=True,
        cwd=ROOT,
        env=_env({}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr


@pytest.mark.parametrize("module", ["engine.config", "engine.runtime"])
@pytest.mark.parametrize("name", ["KUCOIN_REST_URL", "KUCOIN_SPOT_REST_URL", "TELEGRAM_API_BASE_URL"])
def test_refused_url_with_a_password_is_named_but_its_password_never_echoed(module: str, name: str) -> None:
    """A proxy URL carries its user and password (https://user:pass@proxy): refused for plain http, the one-line
    error echoed it whole, "(got 'http://trader:pr0xyPASSw0rd@proxy.example.com:3128')", to stderr and so into the
    run log that start.sh writes."""
    proc = _cli(module, {name: "http://trader:pr0xyPASSw0rd@proxy.example.com:3128"})
    _assert_one_line(proc, name, "https", "proxy.example.com:3128")
    assert "pr0xyPASSw0rd" not in proc.stderr + proc.stdout, proc.stderr
