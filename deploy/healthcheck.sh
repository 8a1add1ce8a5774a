#!/usr/bin/env bash
# healthcheck.sh [--live]  — exit 0 when ENYGMA is healthy.
# Default: /health/ready must say ready (fresh data, streams connected, storage writable, reconciliation
# clean, a signed exchange call succeeded recently) and the last candle must be younger than MAX_CANDLE_AGE_S.
# --live only checks that it answers.
set -euo pipefail
PORT="${HTTP_PORT:-8000}"
MAX_AGE="${MAX_CANDLE_AGE_S:-900}"
BASE="http://127.0.0.1:${PORT}"
PY="$(dirname "$0")/../.venv/bin/python"
[ -x "$PY" ] || PY=python3
if [ "${1:-}" = "--live" ]; then
  "$PY" -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('$BASE/health/live', timeout=4).status == 200 else 1)"
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
