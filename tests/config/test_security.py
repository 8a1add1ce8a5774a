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
