"""``python -m engine.runtime [--replay DIR] [--speed N|max] [--arm-live]`` — what ``./start.sh`` launches.

A start refused for its configuration exits EX_CONFIG (78), one refused for its database EX_DATAERR (65); the
systemd unit restarts on neither. A crash or an unreachable exchange exits 1, which it does restart on.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import os
import sys
from pathlib import Path

import aiohttp
import structlog

from engine.config.errors import EX_CONFIG, EX_DATAERR, ConfigError
from engine.config.settings import check_replay_speed, load_settings
from engine.config.strategy import ROOT, unsupported_by_runtime
from engine.logging import Redactor, configure_logging
from engine.runtime.app import RunOptions, run
from engine.security import acquire_instance_lock, consume_live_confirmation
from exchange.errors import ExchangeError
from storage.db import StorageError


def forget_pid_file(path: Path) -> None:
    """Remove ``path`` if it names this process. ./start.sh writes the bot's PID to run/enygma.pid (a foreground
    start its own, then execs the bot): the bot removes it as it ends, so a finished foreground run leaves none."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        if int(path.read_text().split()[0]) == os.getpid():
            path.unlink()


def main(argv: list[str] | None = None) -> int:
    atexit.register(forget_pid_file, ROOT / "run" / "enygma.pid")
    p = argparse.ArgumentParser(prog="python -m engine.runtime")
    p.add_argument("--replay", type=Path, help="paper trading on a replay of the candle files in this directory")
    p.add_argument("--speed", default=None, help="replay speed: N × real time, or max")
    p.add_argument("--arm-live", action="store_true", help="(start.sh, after the typed confirmation) arm live trading")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    if args.speed is not None:
        try:
            check_replay_speed(args.speed)
        except ValueError as exc:
            print(f"config error: --speed: {exc} (got {args.speed!r})", file=sys.stderr)
            return EX_CONFIG
    try:
        settings = load_settings()
        unsupported = unsupported_by_runtime(settings.strategy())
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return EX_CONFIG
    if unsupported:  # trading as if they were off would run another strategy than the one configured
        print(f"config error: {unsupported}", file=sys.stderr)
        return EX_CONFIG
    configure_logging(secrets=settings.secret_values())
    if args.arm_live and not settings.live_requested:
        print("config error: --arm-live needs BOT_MODE=live and LIVE_TRADING_ARMED=true", file=sys.stderr)
        return EX_CONFIG
    if args.arm_live and not consume_live_confirmation(ROOT / "run" / "live-confirmation"):
        print(
            "error: --arm-live needs the typed confirmation of ./start.sh in a terminal; a non-interactive start "
            "never arms live trading (start unarmed and arm from Telegram with /arm)",
            file=sys.stderr,
        )
        return EX_CONFIG  # a unit or container command carrying --arm-live: restarting it would only refuse again
    try:
        lock = acquire_instance_lock(settings.db_path)  # held until the process ends
    except ConfigError as exc:  # another bot on this database (or no lock file): the other must be stopped first
        print(f"error: {exc}", file=sys.stderr)
        return EX_CONFIG
    opts = RunOptions(replay_dir=args.replay, speed=args.speed or settings.replay_speed, arm_live=args.arm_live)
    try:
        return asyncio.run(run(settings, opts))
    except ConfigError as exc:  # found on the way up: no candle files, a key that can withdraw, an unknown symbol
        print(f"error: {exc}", file=sys.stderr)
        return EX_CONFIG
    except StorageError as exc:  # a corrupt, read-only or newer database: say which and why, in one line
        print(f"error: {exc}", file=sys.stderr)
        return EX_DATAERR
    except (ExchangeError, aiohttp.ClientError, OSError) as exc:
        # The exchange failed (unreachable, refusing a call): one line, through the redactor, not a traceback wall.
        line = Redactor(settings.secret_values()).clean(f"{type(exc).__name__}: {exc}")
        print(f"error: stopped: {line}", file=sys.stderr)
        return 1
    except Exception:  # a bug: the traceback goes to the log through the secret redactor, never raw to stderr
        structlog.get_logger(__name__).exception("enygma.crashed")
        return 1
    finally:
        lock.close()


if __name__ == "__main__":
    sys.exit(main())
