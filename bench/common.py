"""Shared helpers for the benchmarks: data location, timing, table and JSON output."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = ROOT.parent / "shared" / "data" / "kucoin-futures"
sys.path.insert(0, str(ROOT))


def parse(description: str, extra: Callable[[argparse.ArgumentParser], object] | None = None) -> argparse.Namespace:
    """The options every bench takes, plus any a bench adds through ``extra``."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", type=Path, help="write the figures and ratios here")
    p.add_argument("--data-dir", type=Path, default=DATA_DIR)
    if extra is not None:
        extra(p)
    return p.parse_args()


def best_of(runs: int, fn: Callable[[], float]) -> float:
    """Best (lowest) of ``runs`` measurements: the least disturbed by the rest of the machine."""
    return min(fn() for _ in range(runs))


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


@dataclass(frozen=True, slots=True)
class Timing:
    """Wall and CPU seconds of one call. On the shared 2-core machine the wall time of the same work swings by 2x
    with the other processes; the CPU time of a single-threaded call hardly moves, so peers are compared on both."""

    wall_s: float
    cpu_s: float


def timed_cpu(fn: Callable[[], object]) -> Timing:
    t, c = time.perf_counter(), time.process_time()
    fn()
    return Timing(time.perf_counter() - t, time.process_time() - c)


def emit(
    title: str, rows: list[tuple[str, str]], figures: dict[str, Any], ratios: dict[str, float], path: Path | None
) -> None:
    width = max(len(name) for name, _ in rows)
    print(title)
    for name, value in rows:
        print(f"  {name.ljust(width)}  {value}")
    for name, ratio in ratios.items():
        print(f"  ratio {name}: {ratio:.2f}x (larger is better for ENYGMA)")
    if path is not None:
        path.write_text(json.dumps({**figures, "ratios": {k: round(v, 2) for k, v in ratios.items()}}, indent=2) + "\n")
