"""Compiling the strategy core: where numba keeps it, and a first compile never holding up a stop."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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
    assert out[2] == str(ROOT / "data" / "numba-cache")


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
