"""Start-up security checks that no configuration may skip."""

from __future__ import annotations

import fcntl
import os
import stat
from pathlib import Path
from typing import TextIO

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


class AlreadyRunningError(ConfigError):
    """Another bot holds this database."""


def acquire_instance_lock(db_path: Path) -> TextIO:
    """Hold an exclusive lock beside the database for the life of the process, so two bots (systemd and
    ./start.sh, or a foreground start in another terminal) never trade from one database. The kernel releases it
    when the process ends, however it ends."""
    lock_path = db_path.with_name(db_path.name + ".lock")
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        handle = lock_path.open("a+", encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot create the lock file {lock_path}: {exc.strerror or exc}") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise AlreadyRunningError(
            f"ENYGMA is already running on {db_path} (PID {holder}); stop it first (./start.sh stop)"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle
