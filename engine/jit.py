"""The one way the strategy core is compiled: numba's ``njit`` with the project's settings, typed for mypy.

The per-bar strategy (indicators, signal detectors, scoring, MTF, confidence and the signal gates) is written as
plain functions over float arrays and compiled with numba, so live, paper and backtest run the same machine code:
live calls the per-bar step once per closed candle, the backtest calls it from a compiled loop over the history.
``cache=True`` keeps the compiled code in ``data/numba-cache`` (or ``NUMBA_CACHE_DIR``), under a digest of the core's
sources (``core_digest``: numba would not see a change in another file), so only the first start after an install
or an upgrade pays the compile (``python -m engine.scoring.compile`` pays it ahead of time). Not numba's default
``__pycache__`` next to the source: the systemd unit's read-only project tree (ProtectSystem=strict) would refuse
it, and numba's fallback under the home directory (ProtectHome=true) too, so the first compile would fail.
``error_model="python"`` makes a division by zero raise, as Python would, instead of returning inf silently.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import cast

import numba  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parents[1]
# Everything compiled code reads: the kernels' files and the modules whose kernels and constants they use.
CORE_SOURCES = (
    "engine/jit.py",
    "engine/pysum.py",
    "engine/models.py",
    "engine/indicators",
    "engine/scoring",
    "engine/gates",
)


def core_digest(root: Path = ROOT) -> str:
    """A digest of every strategy-core source file. numba checks a cached function against its own file only, so a
    kernel whose callee or constant changed in another file (an upgrade that edits score_kernel.py or layout.py,
    not strategy_kernel.py) would keep running the old machine code; the cache lives under this digest instead."""
    h = hashlib.sha256()
    for rel in CORE_SOURCES:
        path = root / rel
        for f in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            h.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def writable_cache_dir(wanted: Path, name: str = "") -> Path:
    """``wanted / name`` if this process can create files there, else ``name`` in a directory of its own under the
    temporary directory (systemd's PrivateTmp= one under the unit). A cache directory made by another user
    (``./start.sh test`` run as root before the unit runs the bot as ``enygma``) would otherwise leave numba no
    cache it may write, and it then refuses to compile at all: the bot could not start."""
    try:
        (wanted / name).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=wanted / name):
            return wanted / name
    except OSError:
        return _private_temp_dir() / name


def prune_old_caches(cache_dir: Path) -> list[Path]:
    """Remove the ``core-*`` caches beside ``cache_dir`` (earlier sources' machine code, ~12 MB each, which only a
    process of those sources would read: it compiles again); the directories removed."""
    removed = []
    for old in cache_dir.parent.glob("core-*"):
        ours = re.fullmatch(r"core-[0-9a-f]{16}", old.name) is not None  # not another program's core-*
        if ours and old != cache_dir and old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
            removed.append(old)
    return sorted(removed)


def _private_temp_dir() -> Path:
    """``enygma-numba-cache-<uid>`` under the temporary directory if it is this user's own and only it may write
    there, else a new private one. numba reads its cache files with pickle: a directory another local user made
    first at that fixed name in a shared /tmp (a start outside systemd's PrivateTmp=) would let them run code as the
    bot. Others may read the machine code, not write it."""
    fixed = Path(tempfile.gettempdir()) / f"enygma-numba-cache-{os.getuid()}"
    try:
        fixed.mkdir(mode=0o700, exist_ok=True)
        st = fixed.lstat()  # a symlink planted there is not a directory of ours
        if stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o022:
            return fixed
    except OSError:
        pass
    return Path(tempfile.mkdtemp(prefix="enygma-numba-cache-"))


CACHE_DIR = writable_cache_dir(
    Path(os.environ.get("NUMBA_CACHE_DIR") or ROOT / "data" / "numba-cache"), f"core-{core_digest()}"
)
numba.config.CACHE_DIR = str(CACHE_DIR)  # read when each kernel below is decorated


def kernel[F: Callable[..., object]](fn: F) -> F:
    """Compile ``fn`` (lazily, on its first call) with the project's numba settings.

    numba files its cache under the source file's path as imported; a project reached through a symlink (a
    deployment's ``current`` link, the tests' project copies) would compile everything again. The function's code
    is given its file's real path first, so every way to the same file finds the same cache."""
    code = getattr(fn, "__code__", None)
    if code is not None:
        real = os.path.realpath(code.co_filename)
        if real != code.co_filename:
            fn.__code__ = code.replace(co_filename=real)
    return cast(F, numba.njit(cache=True, error_model="python")(fn))
