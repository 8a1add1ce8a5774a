"""Start-up security checks that no configuration may skip."""

from __future__ import annotations

import stat
from pathlib import Path

from engine.config.errors import ConfigError

SECRET_NAMES = ("KUCOIN_API_KEY", "KUCOIN_API_SECRET", "KUCOIN_API_PASSPHRASE", "TELEGRAM_BOT_TOKEN")


def env_file_holds_secrets(path: Path) -> bool:
    """True when ``path`` sets any secret to a non-empty value."""
    for line in path.read_text(errors="replace").splitlines():
        name, sep, value = line.strip().partition("=")
        if sep and name.strip().upper() in SECRET_NAMES and value.strip().strip("'\"") and not name.startswith("#"):
            return True
    return False


def check_env_file(path: Path) -> None:
    """Refuse a ``.env`` holding secrets that group or others can read (it must be mode 600)."""
    if not path.exists() or not env_file_holds_secrets(path):
        return
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"{path} holds API keys or tokens but has mode {mode:o}; run: chmod 600 {path}")
