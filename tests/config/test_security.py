"""A .env holding keys must be private to its owner; the bot refuses to start otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import ConfigError
from engine.config.settings import load_settings
from engine.security import check_env_file


def test_world_readable_env_with_keys_is_refused(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("BOT_MODE=paper\nTELEGRAM_BOT_TOKEN=123:abc\nTELEGRAM_ALLOWED_USER_IDS=1\nTELEGRAM_CHAT_IDS=1\n")
    env.chmod(0o644)
    with pytest.raises(ConfigError, match=r"mode 644; run: chmod 600"):
        load_settings(env)
    env.chmod(0o600)
    assert load_settings(env).telegram_enabled


def test_env_without_secrets_or_missing_is_fine(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("BOT_MODE=paper\nKUCOIN_API_SECRET=\n#KUCOIN_API_KEY=commented\n")
    env.chmod(0o644)
    check_env_file(env)
    check_env_file(tmp_path / "absent")


@pytest.mark.parametrize(
    "text",
    [
        "export KUCOIN_API_SECRET=s3cret\n",  # python-dotenv reads the export form too
        "KUCOIN_API_KEY = 'k3y'\n",
        'kucoin_api_passphrase="p4ss"\n',
        "WEBHOOK_URL=https://hooks.slack.com/services/T0/B0/XYZsecret\n",
    ],
)
def test_readable_env_with_any_spelling_of_a_secret_is_refused(tmp_path: Path, text: str) -> None:
    env = tmp_path / ".env"
    env.write_text(text)
    env.chmod(0o644)
    with pytest.raises(ConfigError, match=r"mode 644; run: chmod 600"):
        load_settings(env)


def test_env_writable_by_others_is_refused_even_without_secrets(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("BOT_MODE=paper\n")  # anyone who can write it can switch the mode or point it elsewhere
    env.chmod(0o666)
    with pytest.raises(ConfigError, match=r"mode 666\); run: chmod 600"):
        load_settings(env)


def test_unreadable_env_then_one_line(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_bytes(b"BOT_MODE=paper\nSYMBOLS=ETHUSDTM\xff\n")
    env.chmod(0o600)
    with pytest.raises(ConfigError, match=r"cannot read .*\.env"):
        load_settings(env)
    (tmp_path / "dir.env").mkdir()
    with pytest.raises(ConfigError, match=r"cannot read .*dir\.env"):
        load_settings(tmp_path / "dir.env")


@pytest.mark.parametrize(
    ("line", "named"),
    [
        ("LIVE_TRADNG_ARMED=true", "LIVE_TRADNG_ARMED"),
        ("TELEGRAM_ALOWED_USER_IDS=111", "TELEGRAM_ALOWED_USER_IDS"),
        ("export SYMBOL=XBTUSDTM", "SYMBOL"),
    ],
)
def test_env_file_with_an_unknown_setting_is_refused(tmp_path: Path, line: str, named: str) -> None:
    """A misspelt name in .env was silently ignored: the trader believes the setting is in force."""
    env = tmp_path / ".env"
    env.write_text(f"BOT_MODE=paper\n{line}\n")
    env.chmod(0o600)
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    assert f"unknown setting {named}" in str(info.value) and "\n" not in str(info.value)
