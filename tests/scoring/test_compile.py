"""Compiling the strategy core: where numba keeps it, and a first compile never holding up a stop."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from engine.jit import core_digest
from tests.conftest import ROOT


def test_a_project_reached_through_a_symlink_uses_the_same_compiled_cache(tmp_path: Path) -> None:
    """numba files its cache under the source path as imported: through a symlink (a deployment's `current` link,
    the launcher tests' projects) every kernel was compiled again, 30-60 s at each start. The kernels now carry
    their file's real path."""
    home = tmp_path / "linked project"
    home.mkdir()
    (home / "engine").symlink_to(ROOT / "engine")
    code = (
        "import engine.indicators.kernel as k, engine.jit as j; "
        "print(k.indicator_step.py_func.__code__.co_filename); print(k.__file__); print(j.CACHE_DIR)"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "PYTHONPATH")}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=home, env=env, capture_output=True, text=True, check=True, timeout=120
    ).stdout.splitlines()
    assert out[1] == str(home / "engine" / "indicators" / "kernel.py")  # imported through the link
    assert out[0] == str(ROOT / "engine" / "indicators" / "kernel.py")  # what numba files the cache under
    assert out[2] == str(ROOT / "data" / "numba-cache" / f"core-{core_digest()}")


def test_a_cache_directory_this_process_cannot_write_falls_back_to_one_it_can(tmp_path: Path) -> None:
    """numba given a cache directory it cannot write (one made by another user) finds no other place it may use
    under systemd and refuses to compile: the bot could not start. The cache then goes under the temporary
    directory instead (systemd's PrivateTmp=)."""
    from engine.jit import writable_cache_dir

    assert writable_cache_dir(tmp_path / "cache") == tmp_path / "cache" and (tmp_path / "cache").is_dir()
    blocked = tmp_path / "a file"
    blocked.write_text("not a directory")  # root may write anywhere: a path through a file fails for every user
    fallback = writable_cache_dir(blocked / "numba-cache")
    assert fallback == Path(tempfile.gettempdir()) / f"enygma-numba-cache-{os.getuid()}"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run(
        [sys.executable, "-c", "import engine.jit as j, numba; print(j.CACHE_DIR); print(numba.config.CACHE_DIR)"],
        cwd=ROOT,
        env={**env, "NUMBA_CACHE_DIR": str(blocked / "numba-cache")},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    fallback /= f"core-{core_digest()}"  # the bot's own cache is filed under the sources' digest
    assert out.stdout.splitlines() == [str(fallback), str(fallback)]


def test_a_stop_during_a_first_compile_ends_the_bot_at_once() -> None:
    """The bot compiles in a daemon thread: the loop's own executor (asyncio.to_thread) is waited for as the process
    ends, so a stop during a 30-60 s first compile took that long. Here a 60 s "compile" is cancelled after 0.2 s;
    the process ends within seconds, and a result or an error reaches the awaiting task as it is."""
    script = """
import asyncio, sys, time
from engine.runtime.app import _in_daemon_thread

def slow(cfg):
    time.sleep(60)

def fails(cfg):
    raise ValueError(f"bad {cfg}")

async def main():
    assert await _in_daemon_thread(lambda cfg: cfg * 2, 21) == 42
    try:
        await _in_daemon_thread(fails, 7)
    except ValueError as exc:
        print("error:", exc)
    task = asyncio.create_task(_in_daemon_thread(slow, None))
    await asyncio.sleep(0.2)
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        print("cancelled")

asyncio.run(main())
"""
    start = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True, timeout=50
    )
    assert out.stdout.split("\n")[:2] == ["error: bad 7", "cancelled"]
    assert time.monotonic() - start < 30  # not the 60 s the thread still had to go


def test_an_upgrade_that_changes_only_a_callees_file_is_compiled_again(tmp_path: Path) -> None:
    """numba checks a cached function against its own file only: a kernel keeps the compiled code of the kernels
    and constants it reads from other files. An upgrade (``git pull``) that inserted a snapshot column in
    engine/indicators/layout.py, strategy_kernel.py unchanged, left primary_bar reading the old columns: here the
    §2 readiness rule read the bar count from the column before it and said "not ready" for a warmed-up timeframe."""
    project = tmp_path / "project"
    shutil.copytree(ROOT / "engine", project / "engine", ignore=shutil.ignore_patterns("__pycache__"))
    code = (
        "import numpy as np\n"
        "from engine.indicators import layout\n"
        "from engine.scoring.codes import N_INDICATORS\n"
        "from engine.scoring.strategy_kernel import N_PARAMS, P_MIN_CANDLES, timeframe_ready\n"
        "pp = np.zeros(N_PARAMS, np.int64)\n"
        "pp[P_MIN_CANDLES] = 200\n"
        "row = np.zeros(layout.N_SNAP)\n"
        "row[layout.S_BARS] = 500.0\n"
        "none = np.zeros(N_INDICATORS, np.int64)\n"
        "print(layout.S_BARS, timeframe_ready(pp, row, none, none, False))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["NUMBA_CACHE_DIR"] = str(tmp_path / "cache")

    def run() -> str:
        return subprocess.run(
            [sys.executable, "-c", code], cwd=project, env=env, capture_output=True, text=True, check=True, timeout=300
        ).stdout.strip()

    assert run() == "40 True"
    layout = project / "engine" / "indicators" / "layout.py"
    text = layout.read_text()
    layout.write_text(text.replace("S_BARS = 40\nN_SNAP = 41", "S_MFI = 40\nS_BARS = 41\nN_SNAP = 42"))
    assert run() == "41 True"


def test_every_file_with_compiled_code_is_in_the_cache_digest() -> None:
    """A kernel added outside the digested sources would again keep stale callees after an upgrade."""
    from engine.jit import CORE_SOURCES

    covered = {ROOT / rel for rel in CORE_SOURCES}
    for path in (ROOT / "engine").rglob("*.py"):
        if "from engine.jit import" in path.read_text():
            assert path in covered or any(d in path.parents for d in covered), path


def test_the_temporary_fallback_is_never_a_directory_another_user_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """numba loads its cache files with pickle: a fallback cache at a fixed name in a shared /tmp (a start outside
    systemd's PrivateTmp=) that another local user made first would let that user run code as the bot, which holds
    the API keys. A fallback directory that is not this user's own, or that others may write, is not used."""
    from engine import jit

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    blocked = tmp_path / "a file"
    blocked.write_text("not a directory")
    shared = tmp_path / f"enygma-numba-cache-{os.getuid()}"
    shared.mkdir()
    shared.chmod(0o777)  # made first by someone else, or left open to everyone
    if os.getuid() == 0:
        os.chown(shared, 65534, 65534)  # nobody's
    got = jit.writable_cache_dir(blocked / "numba-cache", "core-x")
    assert shared not in got.parents
    assert got.parent.stat().st_uid == os.getuid() and got.parent.stat().st_mode & 0o022 == 0
    assert got.name == "core-x"
    shared.rmdir()
    own = jit.writable_cache_dir(blocked / "numba-cache", "core-x")  # free again: the fixed name, made private
    assert own == shared / "core-x" and shared.stat().st_mode & 0o022 == 0


def test_the_caches_of_earlier_sources_are_removed_by_the_compile_command(tmp_path: Path) -> None:
    """Each upgrade files the core under a new digest; ``python -m engine.scoring.compile`` (start.sh test, the unit's
    ExecStartPre, the image build) removes the older ones instead of adding ~12 MB per upgrade for ever."""
    from engine.jit import prune_old_caches

    current, old, other = tmp_path / "core-0123456789abcdef", tmp_path / "core-fedcba9876543210", tmp_path / "core-x"
    for d in (current, old, other):
        d.mkdir()
        (d / "kernel.nbi").write_bytes(b"x")
    (tmp_path / "core-link").symlink_to(other)
    assert prune_old_caches(current) == [old]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["core-0123456789abcdef", "core-link", "core-x"]
    assert (current / "kernel.nbi").exists() and (other / "kernel.nbi").exists()
