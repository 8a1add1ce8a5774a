"""deploy/ as a trader uses it: the container's effective settings, the systemd units' commands and users.

No Docker daemon or systemd here: the files are read the way those tools read them (compose's precedence
``environment`` > ``env_file`` > the image's ``ENV``) and the settings are loaded by the bot's own code.
"""

from __future__ import annotations

import contextlib
import gzip
import http.server
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from engine.config.errors import EX_CONFIG, EX_DATAERR
from engine.config.settings import Settings, load_settings
from engine.jit import core_digest
from tests.conftest import ROOT

DEPLOY = ROOT / "deploy"


def _dockerfile_env() -> dict[str, str]:
    """The final stage's ``ENV a=b \\`` block."""
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    final = text.rsplit("\nFROM ", 1)[1]
    env: dict[str, str] = {}
    for line in final.splitlines():
        if line.startswith("ENV "):
            env.update(dict(pair.split("=", 1) for pair in line[4:].split()))
    return env


def _env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines as compose's env_file reads them (comments and blank lines skipped)."""
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value
    return out


def _container_env() -> dict[str, str]:
    """What the bot sees in the compose service when .env is a copy of .env.example (DEPLOY.md step 3)."""
    service = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())["services"]["enygma"]
    assert service["env_file"] == "../.env"
    return {**_dockerfile_env(), **_env_file(ROOT / ".env.example"), **service["environment"]}


@pytest.fixture
def container(monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    for key, value in _container_env().items():
        monkeypatch.setenv(key, str(value))
    return load_settings(Path("/nonexistent/.env"))  # the image carries no .env: environment only


def _compose_volumes(environ: dict[str, str]) -> dict[str, str]:
    """The enygma service's volumes as compose mounts them: container path -> host source, ``${NAME:-default}``
    taken from ``environ`` (compose reads the shell's environment), a relative source under deploy/."""
    service = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())["services"]["enygma"]
    out: dict[str, str] = {}
    for written in service["volumes"]:
        volume = re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: environ.get(m.group(1)) or m.group(2), written)
        source, target = volume.split(":")[:2]
        out[target] = source if "/" not in source or source.startswith("/") else os.path.normpath(DEPLOY / source)
    return out


def test_compose_mounts_the_replay_candles_start_sh_would_use_or_the_ones_named() -> None:
    """The compose file mounted only ../shared/data/kucoin-futures: on a VPS without it (DEPLOY.md has the trader
    fill data/candles with fetch-candles instead) Docker mounted an empty directory and the paper bot stopped."""
    from engine.runtime.app import REPLAY_CANDIDATES

    assert _compose_volumes({})["/replay"] == str(REPLAY_CANDIDATES[0])  # the bare-metal default, from deploy/
    fetched = "/opt/enygma/data/candles"
    assert _compose_volumes({"ENYGMA_REPLAY_DIR": fetched})["/replay"] == fetched
    assert "ENYGMA_REPLAY_DIR=" in (ROOT / "docs" / "DEPLOY.md").read_text()


def test_compose_with_env_from_the_example_keeps_the_state_on_the_data_volume(container: Settings) -> None:
    """.env.example's DB_PATH=data/enygma.sqlite used to beat the image's /data path: the database went to /app/data
    (not writable by the container's user, and lost with the container)."""
    volumes = set(_compose_volumes({}))
    assert container.db_path == Path("/data/enygma.sqlite")
    assert container.kill_switch_file == Path("/data/run/KILL")
    assert "/data" in volumes
    assert container.replay_dir == Path("/replay") and "/replay" in volumes


def test_compose_with_env_from_the_example_listens_where_the_port_mapping_and_healthcheck_look(
    container: Settings,
) -> None:
    """.env.example's HTTP_HOST=127.0.0.1 used to win: inside the container the bot listened on its own loopback, so
    the host's 127.0.0.1:8000 mapping, Prometheus (enygma:8000) and nothing but the container itself reached it."""
    service = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())["services"]["enygma"]
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert container.http_host == "0.0.0.0" and container.http_allow_remote
    assert service["ports"] == [f"127.0.0.1:{container.http_port}:{container.http_port}"]
    assert f"EXPOSE {container.http_port}" in dockerfile
    assert f"127.0.0.1:{container.http_port}/health/live" in dockerfile
    prometheus = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    assert prometheus["scrape_configs"][0]["static_configs"][0]["targets"] == [f"enygma:{container.http_port}"]


def test_dockerfile_installs_the_pinned_requirements_on_python_312() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.findall(r"^FROM (\S+)", text, re.MULTILINE) == ["python:3.12-slim", "python:3.12-slim"]
    assert "COPY requirements.txt requirements-lock.txt ./" in text
    assert "pip install --no-cache-dir -r requirements.txt" in text
    assert (ROOT / "requirements.txt").read_text().splitlines()[1] == "-c requirements-lock.txt"
    for package in ("engine", "exchange", "storage", "bot"):
        assert f"COPY --chown=enygma:enygma {package} ./{package}" in text
    assert 'ENTRYPOINT ["/bin/sh", "/app/deploy/entrypoint.sh"]' in text and "\nCMD " not in text
    assert "COPY --chown=enygma:enygma deploy/entrypoint.sh ./deploy/entrypoint.sh" in text
    assert re.search(r"^WORKDIR /app$", text, re.MULTILINE)  # where the entrypoint's path is


def _unit(name: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in (DEPLOY / "systemd" / name).read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            out[key] = value
    return out


def test_systemd_unit_runs_what_start_sh_runs_in_the_documented_place() -> None:
    unit = _unit("enygma.service")
    start = (ROOT / "start.sh").read_text()
    assert unit["WorkingDirectory"] == "/opt/enygma"
    assert unit["ExecStart"] == "/opt/enygma/.venv/bin/python -m engine.runtime"
    assert '"$VENV/bin/python" -m engine.runtime' in start and 'VENV="$ROOT/.venv"' in start
    assert (ROOT / "engine" / "runtime" / "__main__.py").is_file()
    assert "/opt/enygma/deploy/healthcheck.sh --live" in unit["ExecStartPost"]
    # ProtectSystem=strict: these must exist before the first start, or systemd refuses it (226/NAMESPACE).
    assert unit["ReadWritePaths"].split() == ["/opt/enygma/data", "/opt/enygma/logs", "/opt/enygma/run"]
    assert "mkdir -p data logs run" in (ROOT / "docs" / "DEPLOY.md").read_text()


def test_the_strategy_core_is_compiled_before_the_bot_and_cached_where_the_bot_may_write(tmp_path: Path) -> None:
    """The first start after an install compiles the strategy core (~30 s). The unit does it before the bot
    (ExecStartPre, with a start timeout to match), the image at build time, ./start.sh test before pytest; and the
    cache is under data/, the one project directory ProtectSystem=strict leaves writable (numba's own default, the
    source tree's __pycache__, is read-only there and its fallback under $HOME hidden by ProtectHome)."""
    unit = _unit("enygma.service")
    assert unit["ExecStartPre"] == "/opt/enygma/.venv/bin/python -m engine.scoring.compile"
    assert int(unit["TimeoutStartSec"]) >= 120
    assert "/opt/enygma/data" in unit["ReadWritePaths"].split()
    docker = (DEPLOY / "Dockerfile").read_text()
    assert docker.index("USER enygma") < docker.index("RUN python -m engine.scoring.compile")  # the user's cache
    start = (ROOT / "start.sh").read_text()
    assert start.index("-m engine.scoring.compile") < start.index("-m pytest --cov")

    def cache_dir(**env: str) -> str:
        base = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
        code = "import engine.jit as j, numba; print(j.CACHE_DIR, numba.config.CACHE_DIR)"
        out = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env={**base, **env}, capture_output=True, text=True, check=True
        )
        return out.stdout.strip()

    core = f"core-{core_digest()}"
    default = str(ROOT / "data" / "numba-cache" / core)
    assert cache_dir() == f"{default} {default}"
    assert cache_dir(NUMBA_CACHE_DIR=str(tmp_path)) == f"{tmp_path / core} {tmp_path / core}"


def test_systemd_unit_gives_the_bot_enough_file_descriptors() -> None:
    """No LimitNOFILE: systemd's soft default of 1024 descriptors, shared by the exchange sockets, SQLite and the HTTP
    side, which ~1000 client connections within its idle timeout could use up. Now 16384."""
    assert int(_unit("enygma.service")["LimitNOFILE"]) == 16384


def test_docker_gives_the_bot_as_long_to_stop_as_systemd_does() -> None:
    """Compose had no stop_grace_period: ``docker stop`` SIGKILLed the bot after Docker's default 10 s, where the
    systemd unit waits 60 (TimeoutStopSec)."""
    service = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())["services"]["enygma"]
    grace = str(service["stop_grace_period"])
    assert grace.endswith("s")
    assert int(grace[:-1]) == int(_unit("enygma.service")["TimeoutStopSec"]) == 60


def test_health_timer_restarts_the_bot_as_a_user_allowed_to() -> None:
    """``systemctl restart enygma`` from the unprivileged user is refused (interactive authentication required), so
    the timer never restarted a hung bot; the check itself is only an HTTP GET to loopback."""
    unit = _unit("enygma-healthcheck.service")
    assert "systemctl restart enygma" in unit["ExecStart"]
    assert unit.get("User", "root") == "root"


def _restarted_by_systemd(unit: dict[str, str], status: int) -> bool:
    """What systemd does when the unit's main process exits with ``status`` (systemd.service(5)): Restart=on-failure
    restarts on a non-zero status unless RestartPreventExitStatus= lists it. (No systemd here to ask.)"""
    assert unit["Restart"] == "on-failure"
    prevented = {int(s) for s in unit.get("RestartPreventExitStatus", "").split()}
    return status != 0 and status not in prevented


def _opt_enygma(tmp_path: Path) -> Path:
    """A copy of the project as /opt/enygma holds it: the bot reads the .env next to its own code."""
    home = tmp_path / "opt enygma"
    for name in ("engine", "exchange", "storage", "bot", "docs"):
        shutil.copytree(ROOT / name, home / name, ignore=shutil.ignore_patterns("__pycache__"))
    return home


def _run_unit_command(home: Path, env_file: str) -> subprocess.CompletedProcess[str]:
    """The unit's ExecStart= in its WorkingDirectory, with ``env_file`` as .env (mode 600)."""
    (home / ".env").write_text(env_file)
    (home / ".env").chmod(0o600)
    unit = _unit("enygma.service")
    assert unit["ExecStart"].startswith(f"{unit['WorkingDirectory']}/.venv/bin/python ")
    argv = [sys.executable, *unit["ExecStart"].split()[1:]]
    base = {k: v for k, v in os.environ.items() if k.upper() not in {n.upper() for n in Settings.model_fields}}
    return subprocess.run(
        argv, cwd=home, env=base, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120, check=False
    )


def test_a_bad_env_under_systemd_stops_with_one_line_and_is_not_restarted(tmp_path: Path) -> None:
    """A bad .env exited 1, and Restart=on-failure restarted it every 10 s for ever, the same line each time. Now a
    configuration error exits 78 (EX_CONFIG), which the unit's RestartPreventExitStatus= lists; an exchange that
    does not answer is no configuration error: it still exits 1 and is restarted."""
    home = _opt_enygma(tmp_path)
    db = f"DB_PATH={tmp_path / 'e.sqlite'}\nHTTP_PORT=0\n"
    unit = _unit("enygma.service")

    proc = _run_unit_command(home, f"BOT_MODE=papr\n{db}")
    assert proc.returncode == EX_CONFIG == 78, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines() == [
        "config error: settings: BOT_MODE: Input should be 'paper', 'shadow' or 'live' (got 'papr')"
    ]
    assert not _restarted_by_systemd(unit, proc.returncode)  # before: exit 1, restarted every RestartSec=10 s

    empty = tmp_path / "no candles"  # a REPLAY_DIR without candle files is found only on the way up
    empty.mkdir()
    proc = _run_unit_command(home, f"REPLAY_DIR={empty}\n{db}")
    errors = [line for line in proc.stderr.splitlines() if line.strip() and not line.startswith("{")]  # not the log
    assert proc.returncode == EX_CONFIG and len(errors) == 1, proc.stderr[-3000:]
    assert errors[0].startswith(f"error: paper replay: no contracts.json in {empty}")
    assert not _restarted_by_systemd(unit, proc.returncode)

    keys = "BOT_MODE=shadow\nKUCOIN_API_KEY=k\nKUCOIN_API_SECRET=s\nKUCOIN_API_PASSPHRASE=p\n"
    nobody = "KUCOIN_REST_URL=http://127.0.0.1:9\nKUCOIN_SPOT_REST_URL=http://127.0.0.1:9\n"  # nothing listens
    proc = _run_unit_command(home, keys + nobody + db)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "cannot start: KuCoin answered" in proc.stderr
    assert _restarted_by_systemd(unit, proc.returncode)
    assert not _restarted_by_systemd(unit, EX_DATAERR)  # an unusable database (tests/storage/test_db.py): before, 1


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_accepts_every_line_of_the_units(tmp_path: Path) -> None:
    """systemd ignores a line it cannot parse with a warning (a misspelt RestartPreventExitStatus=EX_CONFIG would
    leave the bad .env restarting): systemd-analyze verify reports those."""
    for path in (DEPLOY / "systemd").iterdir():
        text = path.read_text().replace("/opt/enygma/.venv/bin/python", sys.executable)
        (tmp_path / path.name).write_text(text.replace("/opt/enygma", str(ROOT)))
    names = sorted(p.name for p in tmp_path.iterdir())
    proc = subprocess.run(
        ["systemd-analyze", "verify", *names], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


class _Live(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"live": true, "phase": "running"}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def live_port() -> Iterator[int]:
    """A bot that answers /health/live."""
    server = http.server.HTTPServer(("127.0.0.1", 0), _Live)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port nobody listens on: bound without listening (a connection is refused) and held for the test, so no
    other process can start listening there meanwhile, as it could on a port picked and released beforehand."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield int(s.getsockname()[1])


def _health_timer_run(tmp_path: Path, port: int, unit_state: str) -> list[str]:
    """The health timer's ExecStart= under /bin/sh, as root runs it, with the bot's unit in ``unit_state``: the
    systemctl commands it ran (a stand-in systemctl on PATH answers is-active and records every call)."""
    home = tmp_path / "opt" / "enygma"  # the unit's command does not quote /opt/enygma
    (home / "deploy").mkdir(parents=True, exist_ok=True)
    shutil.copy(DEPLOY / "healthcheck.sh", home / "deploy" / "healthcheck.sh")
    (home / ".venv" / "bin").mkdir(parents=True, exist_ok=True)
    (home / ".venv" / "bin" / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (home / ".venv" / "bin" / "python").chmod(0o755)
    (home / ".env").write_text(f"HTTP_PORT={port}\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    calls = tmp_path / "systemctl-calls"
    calls.write_text("")
    (bin_dir / "systemctl").write_text(
        f'#!/bin/sh\necho "$*" >> "{calls}"\n'
        f'case "$*" in *is-active*) [ "{unit_state}" = active ] ;; *) exit 0 ;; esac\n'
    )
    (bin_dir / "systemctl").chmod(0o755)
    command = _unit("enygma-healthcheck.service")["ExecStart"].replace("/opt/enygma", str(home))
    assert command.startswith("/bin/sh -c '") and command.endswith("'")
    env = {k: v for k, v in os.environ.items() if k != "HTTP_PORT"}
    env["PATH"] = f"{bin_dir}:/usr/bin:/bin"
    proc = subprocess.run(
        ["/bin/sh", "-c", command[len("/bin/sh -c '") : -1]],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr  # a failed check is the restart, not a failed unit
    return [line for line in calls.read_text().splitlines() if "is-active" not in line]


def test_health_timer_restarts_only_a_running_bot_that_stopped_answering(
    tmp_path: Path, live_port: int, silent_port: int
) -> None:
    """The timer restarted the unit whenever /health/live did not answer: a bot stopped for its configuration (exit
    78, not restarted by the unit) or by a person (systemctl stop enygma) was started again every minute."""
    silent = silent_port  # nothing listens
    assert _health_timer_run(tmp_path, silent, "failed") == []  # before: ['restart enygma']
    assert _health_timer_run(tmp_path, silent, "inactive") == []  # before: ['restart enygma']
    assert _health_timer_run(tmp_path, silent, "activating") == []  # systemd's own restart or start is under way
    assert _health_timer_run(tmp_path, silent, "active") == ["restart enygma"]  # hung: restarted
    assert _health_timer_run(tmp_path, live_port, "active") == []  # answering: left alone


def _logrotate_stanza() -> tuple[str, list[str]]:
    """deploy/logrotate/enygma's one stanza: its path and its directives (comments skipped)."""
    lines = [line.split("#", 1)[0].strip() for line in (DEPLOY / "logrotate" / "enygma").read_text().splitlines()]
    lines = [line for line in lines if line]
    assert lines[0].endswith("{") and lines[-1] == "}", lines
    return lines[0][:-1].strip(), lines[1:-1]


def test_logrotate_matches_how_the_run_logs_are_written() -> None:
    """The run logs are nohup's >> redirect of a bot that never reopens it (only copytruncate rotates the running
    one), one file per start and never written again once that run ends (a time-based rotation truncated each
    finished one to an empty file beside its copy, for ever)."""
    path, directives = _logrotate_stanza()
    start = (ROOT / "start.sh").read_text()
    assert 'local log="$log_dir/enygma-$(date -u +%Y%m%dT%H%M%SZ).log"' in start
    assert 'nohup "$VENV/bin/python" -m engine.runtime "${args[@]}" >>"$log" 2>&1' in start
    assert path == f"{_unit('enygma.service')['WorkingDirectory']}/logs/enygma-*.log"
    assert Settings.model_fields["log_dir"].default == Path("logs")
    names = {d.split()[0] for d in directives}
    assert {"copytruncate", "notifempty", "missingok", "nocreate", "size", "rotate"} <= names, names
    assert not names & {"hourly", "daily", "weekly", "monthly", "yearly", "create", "delaycompress"}, names


_LOGROTATE = shutil.which("logrotate", path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")


@pytest.mark.skipif(_LOGROTATE is None, reason="logrotate not installed")
def test_logrotate_rotates_the_growing_run_log_and_leaves_finished_ones_whole(tmp_path: Path) -> None:
    """logrotate itself over a logs/ directory three days after its last run: a finished run's log and the running
    bot's, written through an O_APPEND descriptor as nohup's >> gives it. Before, the finished one became an empty
    file beside its copy (and stayed so: notifempty never rotates it again)."""
    logs = tmp_path / "logs"
    logs.mkdir()
    path, _ = _logrotate_stanza()
    conf = (DEPLOY / "logrotate" / "enygma").read_text().replace(path, str(logs / "enygma-*.log"))
    conf = conf.replace("size 50M", "size 4k")  # the same rule, at a size a test reaches in a second
    conf = conf.replace("su enygma enygma", "su root root" if os.geteuid() == 0 else "")
    (tmp_path / "enygma.conf").write_text(conf)
    (tmp_path / "enygma.conf").chmod(0o644)
    finished = logs / "enygma-20261101T000000Z.log"
    finished.write_text("".join(f'{{"event": "finished run", "n": {n}}}\n' for n in range(40)))  # 1.3 KB
    before = finished.read_bytes()
    running = logs / "enygma-20261102T000000Z.log"
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfor n in range(100_000):\n    print(n, flush=True); time.sleep(0.001)",
        ],
        stdout=running.open("ab"),  # O_APPEND, as >> opens it
    )
    try:
        while running.stat().st_size < 8_000:
            time.sleep(0.05)
        three_days_ago = (datetime.now(UTC) - timedelta(days=3)).strftime("%Y-%m-%d-%H:%M:%S")
        (tmp_path / "state").write_text(
            f'logrotate state -- version 2\n"{finished}" {three_days_ago}\n"{running}" {three_days_ago}\n'
        )
        proc = subprocess.run(
            [_LOGROTATE, "-s", str(tmp_path / "state"), str(tmp_path / "enygma.conf")],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        time.sleep(0.3)  # the bot goes on writing
    finally:
        writer.kill()
        writer.wait()
    assert finished.read_bytes() == before  # left whole: no copy, not emptied
    assert sorted(p.name for p in logs.iterdir()) == [finished.name, running.name, f"{running.name}.1.gz"]
    assert not [p.name for p in logs.iterdir() if p.stat().st_size == 0]
    copied = gzip.decompress((logs / f"{running.name}.1.gz").read_bytes()).decode().split()
    after = running.read_bytes()
    assert copied[0] == "0" and len(copied) >= 1_000  # the growing log's first 8 KB and more, compressed
    assert b"\0" not in after  # the writer went on at the start of the truncated file, no hole of NULs before it
    assert int(after.split()[0]) > int(copied[-1])  # and what it wrote after the copy is there


def _deploy_section_commands(heading: str) -> list[str]:
    """The mkdir and sqlite3 lines of the bash blocks under one DEPLOY.md heading, end-of-line comments removed."""
    text = (ROOT / "docs" / "DEPLOY.md").read_text()
    section = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.DOTALL)
    lines = [line.split("  #", 1)[0].strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line.startswith(("mkdir ", "sqlite3 "))]


_CRASHED_WRITER = """
import os, sqlite3, sys
conn = sqlite3.connect(sys.argv[1])
conn.execute("PRAGMA wal_autocheckpoint=0")
for seq in range(1000, 4000):
    conn.execute("INSERT INTO events (seq, ts_ms, kind, payload) VALUES (?, 0, 'tick', ?)", (seq, "x" * 500))
    if seq == 2500:
        conn.commit()
        conn.execute("PRAGMA wal_checkpoint(FULL)")  # half of it reaches the file, as the bot's own checkpoints do
conn.commit()
os._exit(0)  # killed: the other half stays in enygma.sqlite-wal
"""


@pytest.mark.skipif(shutil.which("sqlite3") is None, reason="the sqlite3 command-line shell is not installed")
def test_the_documented_restore_after_a_crash_gives_an_intact_database(tmp_path: Path) -> None:
    """DEPLOY.md said 'copy the backup over data/enygma.sqlite'. After a crash the old -wal file is still there and
    SQLite applies it to the copied file: the drill's restored bot answered 'database disk image is malformed'.
    (The backup line also failed on a fresh install: backup/ did not exist.)"""
    import asyncio
    import sqlite3

    from storage.db import Database

    home = tmp_path / "enygma"
    db = home / "data" / "enygma.sqlite"

    async def stored(rows: range) -> int:
        async with Database(db) as database:
            for seq in rows:
                await database.execute(
                    "INSERT INTO events (seq, ts_ms, kind, payload) VALUES (?, 0, 'tick', '{}')", (seq,)
                )
            found = await database.fetchone("SELECT COUNT(*) FROM events")
        return int(found[0]) if found else -1

    assert asyncio.run(stored(range(1, 101))) == 100
    commands = _deploy_section_commands("8. Backing up and restoring")
    backup, restore = commands[:2], commands[2:]
    assert backup[0] == "mkdir -p backup" and len(restore) == 1 and ".restore" in restore[0], commands
    today = subprocess.run(["date", "+%F"], capture_output=True, text=True, check=True).stdout.strip()
    for command in backup:
        subprocess.run(["bash", "-c", command], cwd=home, check=True, timeout=60)
    subprocess.run([sys.executable, "-c", _CRASHED_WRITER, str(db)], check=True, timeout=120)
    assert (home / "data" / "enygma.sqlite-wal").stat().st_size > 100_000

    copied = tmp_path / "copied"  # what the doc used to say
    shutil.copytree(home, copied)
    shutil.copy(home / "backup" / f"enygma-{today}.sqlite", copied / "data" / "enygma.sqlite")
    with (
        contextlib.closing(sqlite3.connect(copied / "data" / "enygma.sqlite")) as conn,
        pytest.raises(sqlite3.DatabaseError, match="malformed"),
    ):
        conn.execute("SELECT COUNT(*) FROM events WHERE payload != ''").fetchone()

    restore_line = re.sub(r"\d{4}-\d{2}-\d{2}", today, restore[0])
    proc = subprocess.run(
        ["bash", "-c", restore_line], cwd=home, capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    with contextlib.closing(sqlite3.connect(db)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert asyncio.run(stored(range(101, 102))) == 101  # the backup's 100 events, and the bot writes on


ENTRYPOINT = DEPLOY / "entrypoint.sh"
STAND_IN = """#!/bin/sh
# The bot as the entrypoint runs it (python -m engine.runtime): says so, then exits with $STAND_IN_EXIT.
echo "stand-in bot started: $*"
if [ "${STAND_IN_EXIT}" = "quick-term" ]; then  # ends at once on SIGTERM, status 0 (a bot with nothing to flush)
  exec "$REAL_PYTHON" -c 'import os, signal; signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
print("ready", flush=True); signal.pause()'
fi
if [ "${STAND_IN_EXIT}" = "term" ]; then
  trap 'echo "stand-in bot: SIGTERM, shutting down"; exit 0' TERM
  while :; do sleep 0.05; done
fi
exit "$STAND_IN_EXIT"
"""


@contextlib.contextmanager
def _entrypoint(
    tmp_path: Path, exit_with: str, *args: str, own_session: bool = True
) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """deploy/entrypoint.sh run by /bin/sh as the image runs it, with a stand-in ``python`` first on PATH; its own
    process group, killed whatever happens (a hold left running would outlive the test). ``own_session=False``: a
    process group in the test's session (the script run by another supervisor)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "python").write_text(STAND_IN)
    (bin_dir / "python").chmod(0o755)
    out = tmp_path / f"out-{exit_with}.txt"
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "STAND_IN_EXIT": exit_with, "REAL_PYTHON": sys.executable}
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            ["/bin/sh", str(ENTRYPOINT), *args],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=own_session,
            process_group=None if own_session else 0,
        )
    try:
        yield proc, out
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 9)
        proc.wait(timeout=10)


def _output_when(out: Path, text: str, timeout_s: float = 10) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = out.read_text()
        if text in got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"no {text!r} within {timeout_s} s in: {out.read_text()!r}")


@pytest.mark.parametrize(("status", "what"), [(EX_CONFIG, "configuration"), (EX_DATAERR, "database")])
def test_the_container_holds_instead_of_restarting_a_config_or_database_error(
    tmp_path: Path, status: int, what: str
) -> None:
    """compose's ``restart: unless-stopped`` restarted a bot that exited 78 or 65 every few seconds for ever (systemd
    stops at once: RestartPreventExitStatus=78 65). The entrypoint says once why it will not go on, then keeps the
    container up without running the bot again (the health check reports it unhealthy); a stop ends the wait at
    once with the bot's status."""
    assert {int(s) for s in _unit("enygma.service")["RestartPreventExitStatus"].split()} == {EX_CONFIG, EX_DATAERR}
    with _entrypoint(tmp_path, str(status)) as (proc, out):
        _output_when(out, "will not be restarted")
        time.sleep(1.5)
        assert proc.poll() is None  # still up: compose sees a running container, not an exit to restart
        text = out.read_text()
        assert text.count("stand-in bot started: -m engine.runtime") == 1  # the bot, run once and not again
        (line,) = [x for x in text.splitlines() if "will not be restarted" in x]
        assert line.startswith(f"enygma: the bot stopped with exit {status} (")
        assert f"until the {what} is fixed" in line and "docker compose -f deploy/docker-compose.yml restart" in line
        started = time.monotonic()
        proc.terminate()  # docker stop
        assert proc.wait(timeout=5) == status and time.monotonic() - started < 3


@pytest.mark.parametrize("status", [1, 0, 137])
def test_any_other_exit_of_the_bot_is_passed_on_for_compose_to_restart(tmp_path: Path, status: int) -> None:
    """A crash (1), a clean stop (0) or the bot killed (137) ends the container with that status at once, so compose
    restarts it as before (``restart: unless-stopped``); nothing is said about a configuration."""
    with _entrypoint(tmp_path, str(status)) as (proc, out):
        assert proc.wait(timeout=10) == status
        text = out.read_text()
        assert text.count("stand-in bot started: -m engine.runtime") == 1 and "will not be restarted" not in text


def test_a_container_stop_reaches_the_bot_through_the_entrypoint(tmp_path: Path) -> None:
    """The entrypoint is PID 1 in the container and receives ``docker stop``'s SIGTERM: the bot gets it and shuts
    down cleanly, and the container ends with the bot's status (0), not after Docker's kill timeout."""
    with _entrypoint(tmp_path, "term") as (proc, out):
        _output_when(out, "stand-in bot started")
        time.sleep(0.2)  # the stand-in's trap is set
        proc.terminate()
        assert proc.wait(timeout=5) == 0
        assert "stand-in bot: SIGTERM, shutting down" in out.read_text()


def test_a_bot_that_ends_at_once_on_a_stop_ends_the_container_with_its_own_status(tmp_path: Path) -> None:
    """The bot exits 0 the moment SIGTERM reaches it. The entrypoint's wait, cut short by the signal, returned 143
    and, the bot being gone already when it looked, the container ended with 143 instead of the bot's 0 (about 4 stops
    in 10 measured when the script is not a session leader; the image's PID 1 is one, where it was not seen); now the
    shell is asked for the bot's status once more. 20 stops, each 0."""
    codes = []
    for n in range(20):
        run = tmp_path / str(n)
        run.mkdir()
        with _entrypoint(run, "quick-term", own_session=False) as (proc, out):
            _output_when(out, "ready")
            proc.terminate()
            codes.append(proc.wait(timeout=5))
    assert codes == [0] * 20


def test_a_one_off_command_runs_as_it_is_without_the_hold(tmp_path: Path) -> None:
    """``docker compose run --rm enygma <command>`` (a check of the configuration, say) ends with its own status,
    78 included: only the bot itself is held."""
    with _entrypoint(tmp_path, "78", "sh", "-c", "echo one-off; exit 78") as (proc, out):
        assert proc.wait(timeout=10) == EX_CONFIG
        assert out.read_text() == "one-off\n"
