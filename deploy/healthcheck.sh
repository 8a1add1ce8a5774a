#!/usr/bin/env bash
# healthcheck.sh [--live]  — exit 0 when ENYGMA is healthy.
# Default: /health/ready must say ready (fresh data, streams connected, storage writable, reconciliation
# clean, a signed exchange call succeeded recently) and the last candle must be younger than MAX_CANDLE_AGE_S.
# --live only checks that it answers.
set -euo pipefail
MAX_AGE="${MAX_CANDLE_AGE_S:-900}"
HERE="$(cd "$(dirname "$0")" && pwd)"
PY="$HERE/../.venv/bin/python"
[ -x "$PY" ] || PY=python3
# The port the bot listens on: HTTP_PORT from the environment, else from the project's .env as the bot reads it
# (python-dotenv: quotes, 'export', any case), else 8000. systemd runs this without the bot's environment.
PORT="${HTTP_PORT:-}"
if [ -z "$PORT" ] && [ -f "$HERE/../.env" ]; then
  PORT="$("$PY" - "$HERE/../.env" 2>/dev/null <<'PY'
import sys
from dotenv import dotenv_values
print({k.upper(): v for k, v in dotenv_values(sys.argv[1]).items()}.get("HTTP_PORT") or "")
PY
)" || PORT=""
fi
PORT="$(printf '%s' "${PORT:-8000}" | tr -d '[:space:]')"
BASE="http://127.0.0.1:${PORT}"
if [ "${1:-}" = "--live" ]; then
  "$PY" - "$BASE" <<'PY'
import sys, urllib.request
try:
    urllib.request.urlopen(sys.argv[1] + "/health/live", timeout=4)
except OSError as e:  # refused, timed out, or an HTTP error status: one line for the journal, not a traceback
    print(f"unhealthy: {sys.argv[1]}/health/live: {e}"); sys.exit(1)
PY
  exit $?
fi
"$PY" - "$BASE" "$MAX_AGE" <<'PY'
import json, sys, urllib.error, urllib.request
base, max_age = sys.argv[1], float(sys.argv[2])
try:
    body = urllib.request.urlopen(base + "/health/ready", timeout=4).read()
except urllib.error.HTTPError as e:
    body = e.read()
except OSError as e:
    print(f"unhealthy: {base} unreachable: {e}"); sys.exit(1)
ready = json.loads(body)
age = ready.get("last_candle_age_s")
problems = [k for k in ("data_fresh", "stream_connected", "storage_ok", "reconciliation_clean", "signed_calls_ok")
            if not ready.get(k)]
if age is None or age > max_age:
    problems.append(f"last candle age {age}s > {max_age}s")
if problems:
    print("unhealthy: " + ", ".join(problems)); sys.exit(1)
print(f"healthy: last candle {age:.0f}s ago, last signed call {ready.get('last_signed_call_age_s')}s ago")
PY
