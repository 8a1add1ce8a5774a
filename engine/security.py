"""Start-up security checks that no configuration may skip."""

from __future__ import annotations

import fcntl
import hmac
import os
import stat
import time
import warnings
from pathlib import Path
from typing import TextIO

from dotenv import dotenv_values

from engine.config.errors import ConfigError

SECRET_NAMES = ("KUCOIN_API_KEY", "KUCOIN_API_SECRET", "KUCOIN_API_PASSPHRASE", "TELEGRAM_BOT_TOKEN", "WEBHOOK_URL")


def env_file_holds_secrets(path: Path) -> bool:
    """True when ``path`` sets any secret to a non-empty value, read the way the settings read it (python-dotenv:
    ``export NAME=``, quotes, spaces around ``=``, any case)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        values = dotenv_values(path, encoding="utf-8")
    return any(name.strip().upper() in SECRET_NAMES and (value or "").strip() for name, value in values.items())


def check_env_file(path: Path) -> None:
    """Refuse a ``.env`` that others may change, or that holds secrets others may read (it must be mode 600)."""
    if not path.exists():
        return
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        if not path.is_file():
            raise IsADirectoryError(21, "not a regular file")
        if mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise ConfigError(f"{path} can be changed by other users (mode {mode:o}); run: chmod 600 {path}")
        holds_secrets = env_file_holds_secrets(path)
    except (OSError, UnicodeDecodeError) as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"cannot read {path}: {detail}") from None
    if holds_secrets and mode & (stat.S_IRWXG | stat.S_IRWXO):
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
            f"ENYGMA is already running on {db_path} (PID {holder}); stop it first "
            "(./start.sh stop, or sudo systemctl stop enygma when systemd runs it)"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


LIVE_CONFIRMATION_ENV = "ENYGMA_LIVE_CONFIRMATION"
LIVE_CONFIRMATION_MAX_AGE_S = 300


def consume_live_confirmation(path: Path) -> bool:
    """True once, right after ./start.sh took the typed ``LIVE`` confirmation: it writes a random one-use value to
    ``path`` (mode 600) and hands the same value to the runtime in the environment. A start that did not go through
    the prompt (systemd, Docker, nohup, a script) has no such value, so ``--arm-live`` alone never arms live."""
    token = os.environ.pop(LIVE_CONFIRMATION_ENV, "")  # not inherited by anything this process starts
    if not token:
        return False
    try:
        info = path.stat()
        expected = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return False
    finally:
        path.unlink(missing_ok=True)
    private = info.st_uid == os.getuid() and not stat.S_IMODE(info.st_mode) & (stat.S_IRWXG | stat.S_IRWXO)
    fresh = time.time() - info.st_mtime <= LIVE_CONFIRMATION_MAX_AGE_S
    return private and fresh and bool(expected) and hmac.compare_digest(expected, token)
