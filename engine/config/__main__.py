"""``./start.sh check-config``: validate the strategy JSON and the environment, print the effective settings."""

from __future__ import annotations

import json
import os
import sys

from engine.config.errors import EX_CONFIG, ConfigError
from engine.config.settings import load_settings
from engine.config.strategy import unsupported_by_runtime


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        settings = load_settings()
        strategy = settings.strategy()
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return EX_CONFIG
    unsupported = unsupported_by_runtime(strategy)
    if unsupported:
        print(f"config error: {unsupported}", file=sys.stderr)
        return EX_CONFIG
    if args == ["--mode"]:
        # For start.sh: which banner to show and whether to ask for the live confirmation.
        print("live-armed" if settings.live_requested else settings.bot_mode)
        return 0
    if args == ["--keep-run-logs"]:
        # For start.sh: how many enygma-<start time>.log files a background start leaves (the new one included).
        print(settings.keep_run_logs)
        return 0
    if args == ["--db-path"]:
        # For start.sh status and stop: the instance lock beside the database names a bot however it was started.
        print(settings.db_path.absolute())
        return 0
    if args == ["--log-dir"]:
        # For start.sh: where a background start writes its run log and prunes the older ones (LOG_DIR; a relative
        # path is under the project directory, where start.sh runs).
        print(settings.log_dir.absolute())
        return 0
    gates = strategy.effective_gates()
    try:
        symbols = ",".join(settings.symbols)
        print(f"mode: {settings.bot_mode.upper()}  control: {settings.control_mode}  symbols: {symbols}")
        print(
            f"strategy {strategy.version.version}: {'STRICT' if gates.strict else 'canonical'} "
            f"min score {gates.min_score:g}, min confidence {gates.min_confidence:g}"
        )
        print(json.dumps(settings.redacted(), indent=2, default=str, sort_keys=True))
        sys.stdout.flush()
    except BrokenPipeError:  # './start.sh check-config | head': the reader has what it wanted; no traceback at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


if __name__ == "__main__":
    sys.exit(main())
