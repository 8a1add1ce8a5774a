#!/usr/bin/env bash
# ENYGMA launcher: finds Python 3.12, keeps .venv in step with the pinned requirements, runs a subcommand.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"

usage() {
  cat <<'USAGE'
ENYGMA - KuCoin USDT-M perpetuals trading bot

Usage: ./start.sh [COMMAND] [OPTIONS]

Trading (the mode comes from .env: BOT_MODE=paper|shadow|live, paper by default):
  (no command)         start the bot in the background (log in LOG_DIR, logs/ by default; PID in run/)
  --foreground         start attached to the terminal
  --replay DIR         paper trading on a replay of candle files in DIR
  --speed N|max        replay speed: N times real time, or as fast as possible (with --replay)
  stop                 stop the running bot (orders and stops stay on the exchange)
  status               is it running, and what /health/ready says

Other commands:
  test                 ruff, mypy --strict, bandit and pytest with coverage (the CI command)
  backtest [ARGS]      run the strategy over candle files; ./start.sh backtest --help for options
  fetch-candles ARGS   download recent KuCoin candles and contract specs (public API, no key), e.g.
                       ./start.sh fetch-candles --symbols ETHUSDTM,XBTUSDTM --days 30 --out data/candles
  check-config         load and validate docs/STRATEGY_CONFIG.json and the environment, then exit
  simulator [ARGS]     run the KuCoin-compatible simulator standalone (python -m exchange.simulator)
  --help               this text
USAGE
}

find_python() {
  local cand
  for cand in "${ENYGMA_PYTHON:-}" python3.12 python3 python; do
    [ -n "$cand" ] || continue
    if command -v "$cand" >/dev/null 2>&1 \
      && "$cand" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 12) else 1)' 2>/dev/null; then
      command -v "$cand"; return 0
    fi
  done
  # pyenv keeps its versions under PYENV_ROOT (default ~/.pyenv); its python3.12 shim fails unless 3.12 is selected.
  for cand in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*/bin/python3 "$HOME"/.pyenv/versions/3.12*/bin/python3 \
      /usr/local/bin/python3.12 /usr/bin/python3.12; do
    if [ -x "$cand" ] && "$cand" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 12) else 1)' 2>/dev/null; then
      echo "$cand"; return 0
    fi
  done
  return 1
}

# ensure_venv FILE: create .venv if missing and install FILE when it changed since the last install.
ensure_venv() {
  local reqs="$1" py stamp want
  if [ ! -x "$VENV/bin/python" ]; then
    py="$(find_python)" || {
      echo "error: Python 3.12 not found. On Ubuntu 24.04: sudo apt-get install python3.12 python3.12-venv" >&2
      exit 1
    }
    echo "Creating .venv with $py"
    "$py" -m venv "$VENV" || {
      echo "error: could not create .venv (on Ubuntu: sudo apt-get install python3.12-venv)" >&2; exit 1; }
  fi
  # A .venv made by hand with another Python (Ubuntu 22.04's python3 is 3.10) would run the bot on it and fail
  # with an import traceback: say what is wrong instead.
  if ! "$VENV/bin/python" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 12) else 1)' 2>/dev/null; then
    echo "error: $VENV uses $("$VENV/bin/python" -V 2>&1 || echo 'a broken Python'), not Python 3.12;" \
      "remove it (rm -rf '$VENV') and run ./start.sh again to rebuild it with 3.12" >&2
    exit 1
  fi
  stamp="$VENV/.installed-$(basename "$reqs")"
  want="$(cat requirements.txt requirements-lock.txt "$reqs" | sha256sum | cut -d' ' -f1)"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "Installing $(basename "$reqs") into .venv"
    "$VENV/bin/python" -m pip install --disable-pip-version-check -q -r "$reqs"
    echo "$want" > "$stamp"
  fi
}

# pip-audit needs its vulnerability service; offline it says so and does not fail the run.
pip_audit() {
  local out
  out="$(timeout 120 "$VENV/bin/python" -m pip_audit -l -f json --progress-spinner off 2>/dev/null)"
  AUDIT_JSON="$out" "$VENV/bin/python" -c '
import json, os, sys
try:
    deps = json.loads(os.environ["AUDIT_JSON"])["dependencies"]
except (ValueError, KeyError):
    print("pip-audit: could not run (no route to its vulnerability service?); skipped, not failed")
    sys.exit(0)
vulnerable = [d for d in deps if d.get("vulns")]
audited = [d for d in deps if "skip_reason" not in d]
for d in vulnerable:
    print("pip-audit:", d.get("name"), d.get("version"), [v.get("id") for v in d["vulns"]], file=sys.stderr)
if vulnerable:
    sys.exit(1)
if not audited:
    print(f"pip-audit: vulnerability service unreachable from here; {len(deps)} packages not audited (skipped, not failed)")
else:
    print(f"pip-audit: {len(audited)} packages audited, no known vulnerabilities")
'
}

run_tests() {
  ensure_venv requirements-dev.txt
  local py="$VENV/bin/python"
  echo "== ruff"; "$py" -m ruff check .
  echo "== mypy --strict"; "$py" -m mypy --strict engine exchange storage bot bench
  echo "== bandit"; "$py" -m bandit -q -r engine exchange storage bot -c pyproject.toml
  echo "== pip-audit"; pip_audit
  local cov=()
  if [ ! -d "$ROOT/../shared/data/kucoin-futures" ] && [ "${CI:-}" != "true" ]; then
    # Without the recorded candles about half the tests skip (each says why), so the 80 % floor cannot hold.
    echo "note: ../shared/data/kucoin-futures not found: the tests that need it skip and coverage is not enforced"
    cov=(--cov-fail-under=0)
  fi
  # Compiled once here, not by whichever test (or bot subprocess) first reaches the strategy core.
  echo "== strategy core"; "$py" -m engine.scoring.compile
  echo "== pytest"; "$py" -m pytest --cov --cov-report=term "${cov[@]}" "$@"
}

PID_FILE="$ROOT/run/enygma.pid"

# is_ours PID: PID is this project's bot (python -m engine.runtime started in this directory). A PID file left by
# a crash or a reboot may name a PID the system has since given to an unrelated process: never signal that one.
is_ours() {
  local pid="$1" args cwd
  case "$pid" in ''|*[!0-9]*) return 1 ;; esac
  kill -0 "$pid" 2>/dev/null || return 1
  if [ -r "/proc/$pid/cmdline" ]; then
    args="$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null)" || return 1
    cwd="$(readlink "/proc/$pid/cwd" 2>/dev/null)" || return 1
    [ "$cwd" = "$(pwd -P)" ] || return 1
  else
    args="$(ps -o args= -p "$pid" 2>/dev/null)" || return 1
  fi
  case "$args" in *" -m engine.runtime"*) return 0 ;; *) return 1 ;; esac
}

running_pid() {
  local pid
  [ -f "$PID_FILE" ] || return 1
  pid="$(head -n 1 "$PID_FILE" | tr -d '[:space:]')"
  if is_ours "$pid"; then echo "$pid"; return 0; fi
  return 1
}

# lock_pid: the bot holding the instance lock beside the database (DB_PATH.lock, where the bot writes its PID),
# however it was started: systemd and a hand-run python -m engine.runtime leave no PID file. Checked like it.
lock_pid() {
  local db pid
  [ -x "$VENV/bin/python" ] || return 1
  db="$("$VENV/bin/python" -m engine.config --db-path 2>/dev/null)" || return 1
  [ -f "$db.lock" ] || return 1
  pid="$(head -n 1 "$db.lock" | tr -d '[:space:]')"
  if is_ours "$pid"; then echo "$pid"; return 0; fi
  return 1
}

NOT_OURS="not started by ./start.sh (systemd? then: sudo systemctl status|stop enygma)"

start_bot() {
  local foreground=0 args=() mode confirm confirmation keep log_dir
  while [ $# -gt 0 ]; do
    case "$1" in
      --foreground) foreground=1; shift ;;
      --replay) [ $# -ge 2 ] || { echo "error: --replay needs a directory" >&2; exit 2; }
                [ -d "$2" ] || { echo "error: replay directory not found: $2" >&2; exit 2; }
                args+=(--replay "$(cd "$2" && pwd)"); shift 2 ;;
      --speed) [ $# -ge 2 ] || { echo "error: --speed needs N or max" >&2; exit 2; }
               args+=(--speed "$2"); shift 2 ;;
      *) echo "error: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
  done
  ensure_venv requirements.txt
  if pid="$(running_pid)"; then echo "ENYGMA is already running (PID $pid); ./start.sh stop first" >&2; exit 1; fi
  if pid="$(lock_pid)"; then echo "ENYGMA is already running (PID $pid), $NOT_OURS" >&2; exit 1; fi
  # Validates .env and the strategy JSON (one clear line on error) and prints the mode: paper, shadow, live or live-armed.
  # A config error exits with the check's status, 78 (EX_CONFIG), as the bot itself does.
  mode="$("$VENV/bin/python" -m engine.config --mode)" || exit $?
  case "$mode" in
    paper)  echo "=== PAPER TRADING: simulated exchange, no real orders ===" ;;
    shadow) echo "=== SHADOW: live KuCoin data, orders only validated, nothing placed ===" ;;
    # /arm (Telegram) refuses without LIVE_TRADING_ARMED=true too: this bot cannot be armed until .env changes.
    live)   echo "=== LIVE mode requested but LIVE_TRADING_ARMED is not true: runs as SHADOW, orders only validated;" \
              "it cannot be armed (not even with /arm) until LIVE_TRADING_ARMED=true in .env ===" ;;
    live-armed)
      echo "!!! LIVE TRADING WITH REAL MONEY on KuCoin Futures !!!"
      if [ ! -t 0 ]; then echo "error: live trading needs an interactive confirmation (run from a terminal)" >&2; exit 1; fi
      printf 'Type LIVE to confirm: '
      read -r confirm
      [ "$confirm" = "LIVE" ] || { echo "not confirmed; nothing started" >&2; exit 1; }
      # A one-use proof of the typed confirmation: without it, python -m engine.runtime --arm-live refuses to arm.
      mkdir -p "$ROOT/run"
      confirmation="$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
      ( umask 077; printf '%s\n' "$confirmation" > "$ROOT/run/live-confirmation" )
      export ENYGMA_LIVE_CONFIRMATION="$confirmation"
      args+=(--arm-live) ;;
    *) echo "error: unexpected mode '$mode'" >&2; exit 1 ;;
  esac
  # LOG_DIR from .env or the environment, as the bot reads it (logs/ under the project by default).
  log_dir="$("$VENV/bin/python" -m engine.config --log-dir)" || exit $?
  mkdir -p -- "$log_dir" || { echo "config error: cannot create the log directory LOG_DIR=$log_dir" >&2; exit 78; }
  mkdir -p "$ROOT/run"
  if [ "$foreground" = 1 ]; then
    # exec keeps this PID: ./start.sh status and stop from another terminal find the foreground bot too.
    echo "$$" > "$PID_FILE"
    exec "$VENV/bin/python" -m engine.runtime "${args[@]}"
  fi
  keep="$("$VENV/bin/python" -m engine.config --keep-run-logs)" || exit $?
  local log="$log_dir/enygma-$(date -u +%Y%m%dT%H%M%SZ).log"
  prune_run_logs "$keep" "$log" "$log_dir"
  nohup "$VENV/bin/python" -m engine.runtime "${args[@]}" >>"$log" 2>&1 </dev/null &
  local bot=$! status=0
  echo "$bot" > "$PID_FILE"
  # Started means listening: a bot that stops on its first checks (no candle files, a bad --speed, the port taken,
  # KuCoin unreachable) takes longer than a fixed second to import and fail, and was reported as started.
  local i
  for i in $(seq 1 60); do  # up to 30 s
    if ! running_pid >/dev/null; then
      # The bot's own status (78 config, 65 database, 1 anything else); never wait on one still running.
      if ! kill -0 "$bot" 2>/dev/null; then wait "$bot" || status=$?; fi
      echo "error: ENYGMA stopped during start-up; last log lines:" >&2; tail -n 20 "$log" >&2
      rm -f "$PID_FILE"; exit $(( status ? status : 1 ))
    fi
    grep -q 'http\.listening' "$log" 2>/dev/null && break
    sleep 0.5
  done
  echo "ENYGMA started (PID $(cat "$PID_FILE")); log: $log"
  grep -q 'http\.listening' "$log" 2>/dev/null \
    || echo "note: still starting after 30 s (not listening on HTTP yet); watch the log"
  echo "Stop with ./start.sh stop; health: ./start.sh status"
}

# prune_run_logs KEEP NEW DIR: before a background start writes its log NEW (DIR/enygma-<UTC time>.log, DIR being
# LOG_DIR), delete all but the newest KEEP-1 earlier ones in DIR, so that KEEP remain with the new one
# (KEEP_RUN_LOGS, default 20); without it one file per start piled up for ever. Only files named exactly as
# start_bot names them, and with each its copies rotated by deploy/logrotate (<name>.1, <name>.2.gz, ...), which
# nothing else removes once their run log is gone; other names, symlinks and directories are never touched.
prune_run_logs() {
  local keep="$1" new="$2" dir="$3" logs=() f excess i
  local LC_ALL=C  # the names carry the start time: in C collation, sorted by name is oldest first
  for f in "$dir"/enygma-[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]T[0-9][0-9][0-9][0-9][0-9][0-9]Z.log; do
    if [ -f "$f" ] && [ ! -L "$f" ] && [ "$f" != "$new" ]; then logs+=("$f"); fi
  done
  excess=$(( ${#logs[@]} - keep + 1 ))
  for (( i = 0; i < excess; i++ )); do
    rm -f -- "${logs[$i]}" || echo "warning: could not delete old run log ${logs[$i]}" >&2
    for f in "${logs[$i]}".[0-9]*; do
      if [[ "${f#"${logs[$i]}".}" =~ ^[0-9]+(\.gz)?$ ]] && [ -f "$f" ] && [ ! -L "$f" ]; then
        rm -f -- "$f" || echo "warning: could not delete old run log $f" >&2
      fi
    done
  done
}

stop_bot() {
  local pid i
  if ! pid="$(running_pid)"; then
    # Not signalled: its supervisor would see it gone (and the unit would not say why); stop it through that.
    if pid="$(lock_pid)"; then echo "error: ENYGMA (PID $pid) is running, $NOT_OURS" >&2; exit 1; fi
    echo "ENYGMA is not running"; rm -f "$PID_FILE"; return 0
  fi
  kill -TERM "$pid"
  for i in $(seq 1 60); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$PID_FILE"; echo "ENYGMA stopped"; return 0; }
    sleep 0.5
  done
  echo "error: PID $pid did not stop within 30 s; it is still running" >&2
  exit 1
}

status_bot() {
  local pid
  if pid="$(running_pid)"; then
    echo "ENYGMA is running (PID $pid)"
  elif pid="$(lock_pid)"; then
    echo "ENYGMA is running (PID $pid), $NOT_OURS"
  else
    echo "ENYGMA is not running"; return 3
  fi
  # The port as the bot reads it: HTTP_PORT from the environment, else from .env through python-dotenv (quotes,
  # 'export', any case), else 8000.
  "$VENV/bin/python" - <<'PY' || true
import json, os, sys, urllib.error, urllib.request
from pathlib import Path

port = os.environ.get("HTTP_PORT")
if port is None and Path(".env").is_file():
    try:
        from dotenv import dotenv_values
        port = {k.upper(): v for k, v in dotenv_values(".env").items()}.get("HTTP_PORT")
    except Exception as e:  # an unreadable .env: say so, do not fail the status
        print(f"health: cannot read .env ({e})")
port = (port or "8000").strip()
url = f"http://127.0.0.1:{port}/health/ready"
try:
    body = urllib.request.urlopen(url, timeout=3).read()
except urllib.error.HTTPError as e:
    body = e.read()
except (OSError, ValueError) as e:
    print(f"health: {url} unreachable ({e})"); sys.exit(0)
print("health:", json.dumps(json.loads(body)))
PY
}

cmd="${1:-}"
case "$cmd" in
  ""|--foreground|--replay|--speed) start_bot "$@" ;;
  stop) stop_bot ;;
  status) status_bot ;;
  -h|--help|help) usage ;;
  test) shift; run_tests "$@" ;;
  backtest) shift; ensure_venv requirements.txt; exec "$VENV/bin/python" -m engine.backtest "$@" ;;
  check-config) shift; ensure_venv requirements.txt; exec "$VENV/bin/python" -m engine.config "$@" ;;
  fetch-candles) shift; ensure_venv requirements.txt; exec "$VENV/bin/python" -m engine.marketdata.fetch "$@" ;;
  simulator) shift; ensure_venv requirements.txt; exec "$VENV/bin/python" -m exchange.simulator "$@" ;;
  *) echo "unknown command: $cmd" >&2; usage >&2; exit 2 ;;
esac
