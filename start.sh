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

Commands:
  test                 ruff, mypy --strict, bandit and pytest with coverage (the CI command)
  backtest [ARGS]      run the strategy over candle files; ./start.sh backtest --help for options
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
  for cand in "$HOME"/.pyenv/versions/3.12*/bin/python3 /usr/local/bin/python3.12 /usr/bin/python3.12; do
    if [ -x "$cand" ]; then echo "$cand"; return 0; fi
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
  stamp="$VENV/.installed-$(basename "$reqs")"
  want="$(cat requirements.txt requirements-lock.txt "$reqs" | sha256sum | cut -d' ' -f1)"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "Installing $(basename "$reqs") into .venv"
    "$VENV/bin/python" -m pip install --disable-pip-version-check -q -r "$reqs"
    echo "$want" > "$stamp"
  fi
}

run_tests() {
  ensure_venv requirements-dev.txt
  local py="$VENV/bin/python"
  echo "== ruff"; "$py" -m ruff check .
  echo "== mypy --strict"; "$py" -m mypy --strict engine exchange storage bot
  echo "== bandit"; "$py" -m bandit -q -r engine exchange storage bot -c pyproject.toml
  echo "== pytest"; "$py" -m pytest --cov --cov-report=term "$@"
}

cmd="${1:-}"
case "$cmd" in
  -h|--help|help) usage ;;
  test) shift; run_tests "$@" ;;
  backtest) shift; ensure_venv requirements.txt; exec "$VENV/bin/python" -m engine.backtest "$@" ;;
  check-config) shift; ensure_venv requirements.txt; exec "$VENV/bin/python" -m engine.config "$@" ;;
  simulator) shift; ensure_venv requirements.txt; exec "$VENV/bin/python" -m exchange.simulator "$@" ;;
  *) echo "unknown command: $cmd" >&2; usage >&2; exit 2 ;;
esac
