"""start.sh as a trader meets it: help, unknown commands, and the live confirmation that a script cannot skip."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from engine.config.errors import EX_CONFIG
from tests.conftest import ROOT

START = ROOT / "start.sh"


def _requirements_digest(cwd: Path) -> str:
    """The digest start.sh computes of the requirements and keeps in .venv/.installed-requirements.txt."""
    return subprocess.run(
        "cat requirements.txt requirements-lock.txt requirements.txt | sha256sum | cut -d' ' -f1",
        shell=True,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def _run(
    *args: str, env: dict[str, str] | None = None, cwd: Path = ROOT, script: Path = START
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("BOT_", "KUCOIN_", "LIVE_", "TELEGRAM_"))}
    return subprocess.run(
        ["bash", str(script), *args],
        cwd=cwd,
        env={**base, **(env or {})},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_help_lists_every_command() -> None:
    proc = _run("--help")
    assert proc.returncode == 0
    for word in (
        "test",
        "backtest",
        "fetch-candles",
        "stop",
        "status",
        "--replay",
        "--speed",
        "--foreground",
        "check-config",
    ):
        assert word in proc.stdout


def test_unknown_command_exits_2_with_usage() -> None:
    proc = _run("frobnicate")
    assert proc.returncode == 2
    assert "unknown command: frobnicate" in proc.stderr


def test_live_armed_without_terminal_is_refused_and_nothing_starts() -> None:
    env = {
        "BOT_MODE": "live",
        "LIVE_TRADING_ARMED": "true",
        "KUCOIN_API_KEY": "k",
        "KUCOIN_API_SECRET": "s",
        "KUCOIN_API_PASSPHRASE": "p",
    }
    proc = _run(env=env)
    assert proc.returncode == 1
    assert "LIVE TRADING WITH REAL MONEY" in proc.stdout
    assert "needs an interactive confirmation" in proc.stderr
    assert not (ROOT / "run" / "enygma.pid").exists()


def test_shadow_without_keys_fails_with_one_line() -> None:
    proc = _run(env={"BOT_MODE": "shadow"})
    assert proc.returncode == EX_CONFIG
    assert "BOT_MODE=shadow needs KUCOIN_API_KEY" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_replay_with_missing_dir_is_refused() -> None:
    proc = _run("--replay", "/nonexistent/dir")
    assert proc.returncode == 2
    assert "replay directory not found" in proc.stderr


def test_status_when_not_running() -> None:
    proc = _run("status")
    assert proc.returncode == 3
    assert "not running" in proc.stdout


def _copy_launcher(tmp_path: Path) -> Path:
    """start.sh in a fresh project directory whose path has spaces (stop and status need no .venv)."""
    home = tmp_path / "my trading bot"
    (home / "run").mkdir(parents=True)
    (home / "start.sh").write_text(START.read_text())
    return home


def _sleeper(cwd: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([*args], cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)


def test_stop_when_pid_file_names_an_unrelated_process_then_it_is_left_alone(tmp_path: Path) -> None:
    home = _copy_launcher(tmp_path)
    other = _sleeper(tmp_path, "sleep", "60")  # the PID a reboot handed to somebody else's process
    try:
        (home / "run" / "enygma.pid").write_text(f"{other.pid}\n")
        proc = _run("stop", cwd=home, script=home / "start.sh")
        status = _run("status", cwd=home, script=home / "start.sh")
        assert other.poll() is None, "start.sh stop killed a process that is not ENYGMA"
        assert proc.returncode == 0
        assert "not running" in proc.stdout
        assert status.returncode == 3 and "not running" in status.stdout
        assert not (home / "run" / "enygma.pid").exists()
    finally:
        other.kill()
        other.wait()


def test_stop_when_pid_file_names_our_bot_then_it_stops(tmp_path: Path) -> None:
    home = _copy_launcher(tmp_path)
    pkg = home / "engine" / "runtime"
    pkg.mkdir(parents=True)
    (home / "engine" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "__main__.py").write_text("import time\ntime.sleep(60)\n")
    bot = _sleeper(home, sys.executable, "-m", "engine.runtime")
    try:
        (home / "run" / "enygma.pid").write_text(f"{bot.pid}\n")
        assert "is running" in _run("status", cwd=home, script=home / "start.sh").stdout
        reaper = threading.Thread(target=bot.wait)  # reaped at once, as init reaps a detached bot
        reaper.start()
        proc = _run("stop", cwd=home, script=home / "start.sh")
        reaper.join(timeout=10)
        assert proc.returncode == 0, proc.stderr
        assert "ENYGMA stopped" in proc.stdout
        assert bot.returncode == -signal.SIGTERM
    finally:
        bot.kill()
        bot.wait()


LIVE_ENV = {
    "BOT_MODE": "live",
    "LIVE_TRADING_ARMED": "true",
    "KUCOIN_API_KEY": "k",
    "KUCOIN_API_SECRET": "s",
    "KUCOIN_API_PASSPHRASE": "p",
    "KUCOIN_REST_URL": "http://127.0.0.1:9",  # nothing listens: a start that gets past arming stops right there
    "KUCOIN_SPOT_REST_URL": "http://127.0.0.1:9",
}


def test_runtime_arm_live_without_the_typed_confirmation_is_refused(tmp_path: Path) -> None:
    """systemd, Docker or nohup running 'python -m engine.runtime --arm-live' must not arm live by itself."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("BOT_", "KUCOIN_", "LIVE_", "TELEGRAM_"))}
    proc = subprocess.run(
        [sys.executable, "-m", "engine.runtime", "--arm-live"],
        cwd=ROOT,
        env={**base, **LIVE_ENV, "DB_PATH": str(tmp_path / "e.sqlite"), "HTTP_PORT": "0"},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == EX_CONFIG
    assert "typed confirmation" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    forged = {**base, **LIVE_ENV, "DB_PATH": str(tmp_path / "e.sqlite"), "ENYGMA_LIVE_CONFIRMATION": "guess"}
    proc = subprocess.run(
        [sys.executable, "-m", "engine.runtime", "--arm-live"],
        cwd=ROOT,
        env=forged,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == EX_CONFIG and "typed confirmation" in proc.stderr, proc.stderr


def test_typed_live_confirmation_in_a_terminal_arms_the_runtime(tmp_path: Path) -> None:
    import pty

    base = {k: v for k, v in os.environ.items() if not k.startswith(("BOT_", "KUCOIN_", "LIVE_", "TELEGRAM_"))}
    env = {**base, **LIVE_ENV, "DB_PATH": str(tmp_path / "e.sqlite"), "HTTP_PORT": "0"}
    pid, fd = pty.fork()
    if pid == 0:  # the child: start.sh attached to a terminal, as a trader runs it
        os.chdir(ROOT)
        os.execve("/bin/bash", ["bash", str(START), "--foreground"], env)
    out = b""
    deadline = time.monotonic() + 120
    answered = False
    while time.monotonic() < deadline:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
        if not answered and b"Type LIVE to confirm" in out:
            os.write(fd, b"LIVE\n")
            answered = True
    os.close(fd)
    _, status = os.waitpid(pid, 0)
    text = out.decode(errors="replace")
    assert answered, text
    assert "typed confirmation" not in text, text
    assert "cannot start: KuCoin answered" in text, text  # got past arming, stopped at the unreachable exchange
    assert os.waitstatus_to_exitcode(status) == 1
    assert not list((ROOT / "run").glob("live-confirmation*")), "the confirmation is used once and removed"


def _pyenv_python(version: str) -> Path | None:
    found = sorted(Path.home().glob(f".pyenv/versions/{version}*/bin/python3"))
    return found[0] if found else None


def test_venv_made_with_another_python_is_not_silently_reused(tmp_path: Path) -> None:
    other = _pyenv_python("3.11") or _pyenv_python("3.10") or _pyenv_python("3.13")
    if other is None:
        pytest.skip("no Python other than 3.12 on this machine to build the wrong .venv with")
    home = tmp_path / "my trading bot"
    home.mkdir()
    for name in ("start.sh", "requirements.txt", "requirements-lock.txt", "requirements-dev.txt"):
        (home / name).write_text((ROOT / name).read_text())
    for name in ("engine", "exchange", "storage", "bot", "docs"):
        (home / name).symlink_to(ROOT / name)
    subprocess.run([str(other), "-m", "venv", "--without-pip", str(home / ".venv")], check=True, timeout=60)
    digest = _requirements_digest(home)
    (home / ".venv" / ".installed-requirements.txt").write_text(digest + "\n")
    proc = _run("check-config", cwd=home, script=home / "start.sh")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert ".venv" in proc.stderr and "3.12" in proc.stderr, proc.stderr


def test_status_reads_the_port_from_env_as_the_bot_does(tmp_path: Path) -> None:
    """.env may quote the port or use 'export' (python-dotenv, and so the bot, accept both): status must ask the
    port the bot listens on, not fail with a traceback."""
    home = _copy_launcher(tmp_path)
    (home / ".venv").symlink_to(ROOT / ".venv")
    pkg = home / "engine" / "runtime"
    pkg.mkdir(parents=True)
    (home / "engine" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "__main__.py").write_text(
        "import http.server, os, sys\n"
        "class H(http.server.BaseHTTPRequestHandler):\n"
        "    def do_GET(self):\n"
        "        body = b'{\"ready\": true}'\n"
        "        self.send_response(200); self.send_header('Content-Length', str(len(body))); self.end_headers()\n"
        "        self.wfile.write(body)\n"
        # port 0, the one it got written out once listening: a port picked beforehand could be taken meanwhile
        "server = http.server.HTTPServer(('127.0.0.1', 0), H)\n"
        f"open({str(home / 'port.tmp')!r}, 'w').write(str(server.server_address[1]))\n"
        f"os.replace({str(home / 'port.tmp')!r}, {str(home / 'port')!r})\n"
        "server.serve_forever()\n"
    )
    bot = _sleeper(home, sys.executable, "-m", "engine.runtime")
    try:
        (home / "run" / "enygma.pid").write_text(f"{bot.pid}\n")
        deadline = time.monotonic() + 20
        while not (home / "port").exists() and time.monotonic() < deadline:
            assert bot.poll() is None, "the stand-in bot ended"
            time.sleep(0.1)
        port = int((home / "port").read_text())
        (home / ".env").write_text(f'export HTTP_PORT="{port}"\n')
        (home / ".env").chmod(0o600)
        env = {k: v for k, v in os.environ.items() if k != "HTTP_PORT"}
        proc = subprocess.run(
            ["bash", str(home / "start.sh"), "status"],
            cwd=home,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert "is running" in proc.stdout
        assert "Traceback" not in proc.stderr, proc.stderr
        assert 'health: {"ready": true}' in proc.stdout, proc.stdout + proc.stderr
    finally:
        bot.kill()
        bot.wait()


def test_find_python_uses_pyenv_root_wherever_pyenv_lives(tmp_path: Path) -> None:
    """pyenv installed outside ~/.pyenv (PYENV_ROOT=/opt/pyenv, a shared install) must still be found."""
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    if not list(pyenv_root.glob("versions/3.12*/bin/python3")):
        pytest.skip("no pyenv Python 3.12 on this machine")
    script = f"source {shlex.quote(str(START))} --help >/dev/null; find_python"
    proc = subprocess.run(
        ["bash", "-c", script],
        env={"HOME": str(tmp_path), "PYENV_ROOT": str(pyenv_root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    found = proc.stdout.strip()
    version = subprocess.run(
        [found, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True, text=True, check=True
    )
    assert version.stdout.strip() == "(3, 12)"


def _launcher_with_real_config(tmp_path: Path) -> Path:
    """start.sh in a fresh project with the real settings code (so .env is read as the bot reads it), the project's
    .venv, and an engine.runtime that only says it listens, then sleeps: a background start without a bot."""
    import shutil

    venv = Path(sys.executable).parents[1]
    digest = _requirements_digest(ROOT)
    stamp = venv / ".installed-requirements.txt"
    if not stamp.is_file() or stamp.read_text().strip() != digest:
        pytest.skip("the .venv is not installed from these requirements (start.sh would install into it)")
    home = _copy_launcher(tmp_path)
    for name in ("requirements.txt", "requirements-lock.txt"):
        (home / name).write_text((ROOT / name).read_text())
    (home / ".venv").symlink_to(venv)
    # The real engine (settings, strategy validation) but for its runtime.
    shutil.copytree(ROOT / "engine", home / "engine", ignore=shutil.ignore_patterns("__pycache__", "runtime"))
    (home / "docs").mkdir()
    shutil.copy(ROOT / "docs" / "STRATEGY_CONFIG.json", home / "docs" / "STRATEGY_CONFIG.json")
    pkg = home / "engine" / "runtime"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "__main__.py").write_text("import time\nprint('http.listening', flush=True)\ntime.sleep(60)\n")
    return home


def _run_logs(home: Path) -> list[str]:
    return sorted(p.name for p in (home / "logs").glob("enygma-*Z.log") if p.is_file())


def test_a_background_start_keeps_only_the_newest_run_logs(tmp_path: Path) -> None:
    """Every ./start.sh wrote a new logs/enygma-<time>.log and nothing ever removed one: 30 starts, 30 files. Now
    the newest KEEP_RUN_LOGS stay (the new one included); other files in logs/ are never touched."""
    home = _launcher_with_real_config(tmp_path)
    logs = home / "logs"
    logs.mkdir()
    old = [f"enygma-202601{d:02d}T0{h}0000Z.log" for d in range(1, 16) for h in (1, 2)]  # 30, oldest first
    for name in old:
        (logs / name).write_text(f"{name}\n")
    others = ["enygma-keep-me.log", "notes.txt", "enygma-20260101T010000Z.log.gz", "enygma-20260101T010000Z.log.1.old"]
    for name in others:
        (logs / name).write_text("mine\n")
    # Copies deploy/logrotate made: a pruned run's go with it (nothing else would ever remove them), a kept one's stay.
    pruned_copies = ["enygma-20260101T010000Z.log.1", "enygma-20260101T010000Z.log.2.gz"]
    kept_copies = [f"{old[-1]}.1.gz"]
    for name in pruned_copies + kept_copies:
        (logs / name).write_text("rotated\n")
    (logs / "enygma-20260101T000000Z.log").mkdir()  # a directory of that name is not a log
    (home / ".env").write_text("KEEP_RUN_LOGS=5\n")
    (home / ".env").chmod(0o600)
    env = {"ENYGMA_PYTHON": sys.executable}
    proc = _run(env=env, cwd=home, script=home / "start.sh")
    pid = int((home / "run" / "enygma.pid").read_text().split()[0]) if (home / "run" / "enygma.pid").exists() else 0
    try:
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "ENYGMA started" in proc.stdout
        kept = _run_logs(home)
        new = [n for n in kept if n not in old]
        assert len(kept) == 5 and len(new) == 1, kept  # before: 31
        assert kept[:4] == old[-4:]  # the four newest earlier ones
        assert f"log: {logs / new[0]}" in proc.stdout
        for name in others:
            assert (logs / name).read_text() == "mine\n"
        assert (logs / "enygma-20260101T000000Z.log").is_dir()
        assert [name for name in pruned_copies if (logs / name).exists()] == []  # before: both left for ever
        assert (logs / kept_copies[0]).read_text() == "rotated\n"
    finally:
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_keep_run_logs_must_be_a_positive_number(tmp_path: Path) -> None:
    home = _launcher_with_real_config(tmp_path)
    (home / "logs").mkdir()
    (home / "logs" / "enygma-20260101T000000Z.log").write_text("old\n")
    (home / ".env").write_text("KEEP_RUN_LOGS=0\n")
    (home / ".env").chmod(0o600)
    proc = _run(cwd=home, script=home / "start.sh")
    assert proc.returncode == EX_CONFIG
    assert "KEEP_RUN_LOGS" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert (home / "logs" / "enygma-20260101T000000Z.log").read_text() == "old\n"  # nothing deleted
    assert not (home / "run" / "enygma.pid").exists()


def test_live_without_the_armed_switch_says_it_cannot_be_armed(tmp_path: Path) -> None:
    """BOT_MODE=live with LIVE_TRADING_ARMED=false runs as shadow and /arm refuses it (Runtime control.arm): the
    banner must not promise that Telegram can arm it."""
    env = {**LIVE_ENV, "LIVE_TRADING_ARMED": "false", "DB_PATH": str(tmp_path / "e.sqlite"), "HTTP_PORT": "0"}
    proc = _run("--foreground", env=env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    banner = proc.stdout.splitlines()[0]
    assert "runs as SHADOW" in banner, banner
    assert "until armed from Telegram" not in banner
    assert "cannot be armed (not even with /arm) until LIVE_TRADING_ARMED=true" in banner
    assert "cannot start: KuCoin answered" in proc.stderr, proc.stderr  # got past the banner to the exchange
    assert "Traceback" not in proc.stderr
    assert not (ROOT / "run" / "enygma.pid").exists()  # the bot it exec'd removed the PID file as it ended


def _project_with_venv(tmp_path: Path) -> Path:
    """A project directory running the real code with the test interpreter: .venv/bin/python execs it, and the
    install stamp matches, so start.sh installs nothing."""
    home = tmp_path / "my trading bot"
    (home / ".venv" / "bin").mkdir(parents=True)
    for name in ("start.sh", "requirements.txt", "requirements-lock.txt"):
        (home / name).write_text((ROOT / name).read_text())
    for name in ("engine", "exchange", "storage", "bot", "docs"):
        (home / name).symlink_to(ROOT / name)
    python = home / ".venv" / "bin" / "python"
    python.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} "$@"\n')
    python.chmod(0o755)
    digest = _requirements_digest(home)
    (home / ".venv" / ".installed-requirements.txt").write_text(digest + "\n")
    return home


def test_background_start_that_fails_its_first_checks_is_reported_not_called_started(tmp_path: Path) -> None:
    """The bot needs more than a second to import and find there are no candle files: start.sh used to say
    'ENYGMA started' and leave a PID file for a process that was gone a moment later."""
    home = _project_with_venv(tmp_path)
    empty = tmp_path / "no candles"
    empty.mkdir()
    env = {"REPLAY_DIR": str(empty), "DB_PATH": str(tmp_path / "e.sqlite"), "HTTP_PORT": "0"}
    proc = _run(env=env, cwd=home, script=home / "start.sh")
    assert proc.returncode == EX_CONFIG, proc.stdout + proc.stderr
    assert "ENYGMA started" not in proc.stdout
    assert "stopped during start-up" in proc.stderr
    assert f"paper replay: no contracts.json in {empty}" in proc.stderr
    assert not (home / "run" / "enygma.pid").exists()
    proc = _run("--speed", "0", env={**env, "REPLAY_DIR": str(tmp_path)}, cwd=home, script=home / "start.sh")
    assert proc.returncode == EX_CONFIG and "--speed: must be a positive number or 'max' (got '0')" in proc.stderr


def test_background_start_is_reported_once_the_bot_listens(tmp_path: Path, data_dir: Path) -> None:
    home = _project_with_venv(tmp_path)
    env = {"REPLAY_DIR": str(data_dir), "DB_PATH": str(tmp_path / "e.sqlite"), "HTTP_PORT": "0"}
    proc = _run(env=env, cwd=home, script=home / "start.sh")
    try:
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "ENYGMA started (PID" in proc.stdout
        logs = list((home / "logs").glob("enygma-*.log"))
        assert len(logs) == 1 and "http.listening" in logs[0].read_text()  # listening before it said so
    finally:
        stopped = _run("stop", cwd=home, script=home / "start.sh")
    assert stopped.returncode == 0 and "ENYGMA stopped" in stopped.stdout, stopped.stdout + stopped.stderr


def test_status_and_stop_find_a_foreground_bot(tmp_path: Path, data_dir: Path) -> None:
    """./start.sh --foreground wrote no PID file: from another terminal status said 'not running' (exit 3) and stop
    'not running' while the bot traded on."""
    home = _project_with_venv(tmp_path)
    env = {"REPLAY_DIR": str(data_dir), "DB_PATH": str(tmp_path / "e.sqlite"), "HTTP_PORT": "0"}
    base = {k: v for k, v in os.environ.items() if not k.startswith(("BOT_", "KUCOIN_", "LIVE_", "TELEGRAM_"))}
    log = (tmp_path / "terminal").open("w")
    bot = subprocess.Popen(
        ["bash", str(home / "start.sh"), "--foreground"],
        cwd=home,
        env={**base, **env},
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while "http.listening" not in (tmp_path / "terminal").read_text() and time.monotonic() < deadline:
            assert bot.poll() is None, (tmp_path / "terminal").read_text()
            time.sleep(0.2)
        status = _run("status", cwd=home, script=home / "start.sh")
        assert status.returncode == 0, status.stdout + status.stderr  # before: 3
        assert f"ENYGMA is running (PID {bot.pid})" in status.stdout
        reaper = threading.Thread(target=bot.wait)  # reaped at once, as the terminal's shell reaps it
        reaper.start()
        stopped = _run("stop", cwd=home, script=home / "start.sh")
        reaper.join(timeout=30)
        assert stopped.returncode == 0 and "ENYGMA stopped" in stopped.stdout, stopped.stdout + stopped.stderr
        assert bot.returncode == 0  # stopped cleanly, by SIGTERM
        assert not (home / "run" / "enygma.pid").exists()
    finally:
        if bot.poll() is None:
            bot.kill()
            bot.wait()
        log.close()


def test_status_stop_and_start_see_a_bot_systemd_started(tmp_path: Path, data_dir: Path) -> None:
    """A bot started as the systemd unit starts it (python -m engine.runtime, no PID file): status said 'not
    running' (exit 3) and stop 'not running', so DEPLOY.md's upgrade (stop, pull, start) never stopped it and the
    start was refused by the lock, whose message said to run ./start.sh stop."""
    home = _project_with_venv(tmp_path)
    env = {
        "REPLAY_DIR": str(data_dir),
        "DB_PATH": str(home / "data" / "enygma.sqlite"),
        "HTTP_PORT": "0",
        "KILL_SWITCH_FILE": str(tmp_path / "KILL"),
    }
    base = {k: v for k, v in os.environ.items() if not k.startswith(("BOT_", "KUCOIN_", "LIVE_", "TELEGRAM_"))}
    journal = (tmp_path / "journal").open("w")
    bot = subprocess.Popen(
        [str(home / ".venv" / "bin" / "python"), "-m", "engine.runtime"],  # the unit's ExecStart, in its directory
        cwd=home,
        env={**base, **env},
        stdin=subprocess.DEVNULL,
        stdout=journal,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while "http.listening" not in (tmp_path / "journal").read_text() and time.monotonic() < deadline:
            assert bot.poll() is None, (tmp_path / "journal").read_text()
            time.sleep(0.2)
        status = _run("status", env=env, cwd=home, script=home / "start.sh")
        assert status.returncode == 0, status.stdout + status.stderr  # before: 3, 'ENYGMA is not running'
        assert f"ENYGMA is running (PID {bot.pid}), not started by ./start.sh" in status.stdout, status.stdout
        assert "systemctl" in status.stdout
        stop = _run("stop", env=env, cwd=home, script=home / "start.sh")
        assert stop.returncode == 1 and "sudo systemctl status|stop enygma" in stop.stderr, stop.stdout + stop.stderr
        start = _run(env=env, cwd=home, script=home / "start.sh")
        assert start.returncode == 1 and f"already running (PID {bot.pid}), not started" in start.stderr, start.stderr
        assert bot.poll() is None  # left to its supervisor
        assert not (home / "run" / "enygma.pid").exists()
    finally:
        bot.terminate()
        bot.wait(timeout=30)
        journal.close()
    status = _run("status", env=env, cwd=home, script=home / "start.sh")
    assert status.returncode == 3 and "ENYGMA is not running" in status.stdout  # the lock file's PID is gone


def test_a_background_start_writes_and_prunes_its_run_logs_in_log_dir(tmp_path: Path) -> None:
    """LOG_DIR was read by nobody: start.sh always wrote and pruned logs/ under the project. Now the run log goes to
    LOG_DIR and the older ones there are pruned; logs/ is neither written nor pruned."""
    home = _launcher_with_real_config(tmp_path)
    elsewhere = tmp_path / "var" / "enygma-logs"  # does not exist yet: start.sh creates it
    (home / "logs").mkdir()
    untouched = [f"enygma-2026010{d}T000000Z.log" for d in range(1, 5)]
    for name in untouched:
        (home / "logs" / name).write_text("project logs/\n")
    (home / ".env").write_text(f"LOG_DIR={elsewhere}\nKEEP_RUN_LOGS=2\n")
    (home / ".env").chmod(0o600)
    proc = _run(env={"ENYGMA_PYTHON": sys.executable}, cwd=home, script=home / "start.sh")
    pid = int((home / "run" / "enygma.pid").read_text().split()[0]) if (home / "run" / "enygma.pid").exists() else 0
    try:
        assert proc.returncode == 0, proc.stdout + proc.stderr
        new = sorted(p.name for p in elsewhere.glob("enygma-*Z.log"))
        assert len(new) == 1, new  # before: LOG_DIR not even created, the log in logs/
        assert f"log: {elsewhere / new[0]}" in proc.stdout
        assert sorted(p.name for p in (home / "logs").iterdir()) == untouched  # nothing added, nothing pruned
        # Older logs in LOG_DIR are pruned there: KEEP_RUN_LOGS=2 leaves the newest earlier one and the new one.
        os.kill(pid, signal.SIGKILL)
        pid = 0
        for name in ("enygma-20260101T000000Z.log", "enygma-20260102T000000Z.log"):
            (elsewhere / name).write_text("old\n")
        time.sleep(1)  # the next start's log is named by the second
        proc = _run(env={"ENYGMA_PYTHON": sys.executable}, cwd=home, script=home / "start.sh")
        pid = int((home / "run" / "enygma.pid").read_text().split()[0])
        assert proc.returncode == 0, proc.stdout + proc.stderr
        kept = sorted(p.name for p in elsewhere.glob("enygma-*Z.log"))
        assert len(kept) == 2 and "enygma-2026010" not in "".join(kept), kept
        assert sorted(p.name for p in (home / "logs").iterdir()) == untouched
    finally:
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_a_relative_log_dir_is_under_the_project(tmp_path: Path) -> None:
    home = _launcher_with_real_config(tmp_path)
    (home / ".env").write_text("LOG_DIR=var/log\n")
    (home / ".env").chmod(0o600)
    proc = _run(env={"ENYGMA_PYTHON": sys.executable}, cwd=tmp_path, script=home / "start.sh")  # run from elsewhere
    pid = int((home / "run" / "enygma.pid").read_text().split()[0]) if (home / "run" / "enygma.pid").exists() else 0
    try:
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert len(list((home / "var" / "log").glob("enygma-*Z.log"))) == 1
        assert not (home / "logs").exists() and not (tmp_path / "var").exists()
    finally:
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_a_log_dir_that_cannot_be_created_is_one_clear_line(tmp_path: Path) -> None:
    home = _launcher_with_real_config(tmp_path)
    (tmp_path / "a-file").write_text("not a directory\n")
    (home / ".env").write_text(f"LOG_DIR={tmp_path / 'a-file' / 'logs'}\n")
    (home / ".env").chmod(0o600)
    proc = _run(cwd=home, script=home / "start.sh")
    assert proc.returncode == EX_CONFIG
    assert "cannot create the log directory LOG_DIR=" in proc.stderr, proc.stderr
    assert not (home / "run" / "enygma.pid").exists()
