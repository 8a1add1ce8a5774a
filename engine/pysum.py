"""Python 3.12's built-in ``sum()`` of floats, compiled: Neumaier-compensated, so a kernel's total is bit-identical
to the one the readable Python reference computes (a plain running total differs in the last bits, and those bits
move confidences and gate verdicts at their thresholds)."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from engine.jit import kernel


@kernel
def sum_add(f: float, c: float, x: float) -> tuple[float, float]:
    """One step of ``sum()``: the running total and its compensation after adding ``x``."""
    t = f + x
    if abs(f) >= abs(x):
        c += (f - t) + x
    else:
        c += (x - t) + f
    return t, c


@kernel
def sum_end(f: float, c: float) -> float:
    """The end of ``sum()``: the compensation is added when it is non-zero and finite."""
    if c != 0.0 and math.isfinite(c):
        return f + c
    return f


@kernel
def py_sum(values: npt.NDArray[np.float64], n: int) -> float:
    """``sum(values[:n])``."""
    f = 0.0
    c = 0.0
    for i in range(n):
        f, c = sum_add(f, c, values[i])
    return sum_end(f, c)


@kernel
def ring_sum(values: npt.NDArray[np.float64], start: int, cap: int, first: int, n: int) -> float:
    """``sum()`` of the ``n`` oldest-first values of a ring at ``values[start:start + cap]`` whose oldest is at slot
    ``first`` (a ``deque(maxlen=cap)`` summed in its order)."""
    f = 0.0
    c = 0.0
    for i in range(n):
        f, c = sum_add(f, c, values[start + (first + i) % cap])
    return sum_end(f, c)
