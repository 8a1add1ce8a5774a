"""Spec §9.1–§9.3: the signal gates. Every gate is evaluated and every failing reason collected.

The gates run in the compiled kernel (engine/gates/gate_kernel.py); avoid_entry (live only, words) stays here.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple, overload

import numpy as np
import numpy.typing as npt

from engine.config.strategy import StrategyConfig
from engine.gates.gate_kernel import GATES, eval_gates, new_gates_out, threshold_k
from engine.gates.result import GateResult
from engine.scoring.params import score_params
from engine.scoring.signals import Direction


@dataclass(frozen=True, slots=True)
class MicroInputs:
    """Live microstructure for the avoid-entry filter (§11); never present in backtests."""

    spread_pct: float | None = None
    funding_rate_pct: float | None = None
    buy_sell_ratio: float | None = None


class GateInputs(NamedTuple):
    """Everything the §9.3 gates read, already computed."""

    final_score: float
    prev_score: float
    atr_pct: float | None
    confidence: float
    agreeing: int
    total_indicators: int
    trend: Direction
    drawdown_pct: float
    mtf_passed: bool | None
    has_trigger: bool
    divergence_count: int
    rsi_alone: bool | None = None
    micro: MicroInputs | None = None
    mtf_alignment: str | None = None  # for the mtf_alignment gate's explanation, formatted only when read
    mtf_gap: float | None = None


def threshold(cfg: StrategyConfig, atr_pct: float | None) -> float:
    """§9.2: T = base threshold + volatility boost (+5 at ATR% ≥ 4, +10 at ≥ 6)."""
    ip, fp = score_params(cfg)
    return float(threshold_k(ip, fp, math.nan if atr_pct is None else atr_pct))


def not_ready(detail: str) -> list[GateResult]:
    """Gate 0: nothing else is evaluated."""
    return [GateResult("data_not_ready", False, detail=detail)]


def _tri(flag: bool | None) -> int:
    return -1 if flag is None else int(flag)


def kernel_gates(cfg: StrategyConfig, g: GateInputs) -> tuple[npt.NDArray[np.float64], int]:
    """The gate rows ``eval_gates`` writes for ``g`` and how many (avoid_entry, Python-only, is not among them)."""
    ip, fp = score_params(cfg)
    rows = new_gates_out()
    n = eval_gates(
        ip,
        fp,
        float(g.final_score),
        float(g.prev_score),
        math.nan if g.atr_pct is None else float(g.atr_pct),
        float(g.confidence),
        int(g.agreeing),
        int(g.total_indicators),
        int(g.trend),
        float(g.drawdown_pct),
        _tri(g.mtf_passed),
        int(g.has_trigger),
        int(g.divergence_count),
        _tri(g.rsi_alone),
        rows,
    )
    return rows, int(n)


_TRIGGER_DETAIL = "divergence, golden/death cross, squeeze or crossover"
_RSI_ALONE_DETAIL = "gates would fail without standalone RSI"


def gates_from_rows(
    rows: npt.NDArray[np.float64],
    n: int,
    *,
    final_score: float,
    mtf_alignment: str | None = None,
    mtf_gap: float | None = None,
) -> list[GateResult]:
    """The ``GateResult`` list of the first ``n`` gate rows (engine/gates/gate_kernel.py), with the values,
    thresholds and explanations the Python gates gave: ``final_score`` words threshold_cross, ``mtf_alignment`` and
    ``mtf_gap`` word mtf_alignment."""
    out: list[GateResult] = []
    for code_f, _present, passed_f, value, thr in rows[:n].tolist():
        code = GATES[int(code_f)]
        passed = passed_f != 0.0
        if code == "threshold_cross":
            out.append(GateResult(code, passed, value, thr, f"previous score {value:.2f}, now {final_score:.2f}"))
        elif code in ("min_indicators", "divergence_required"):
            out.append(GateResult(code, passed, int(value), int(thr)))
        elif code == "trend_alignment":
            out.append(GateResult(code, passed, Direction(int(value)).label, Direction(int(thr)).label))
        elif code == "mtf_alignment":
            out.append(GateResult(code, passed, detail=f"alignment {mtf_alignment}, gap {mtf_gap}"))
        elif code == "trigger_signal":
            out.append(GateResult(code, passed, detail=_TRIGGER_DETAIL))
        elif code == "rsi_alone":
            out.append(GateResult(code, passed, detail=_RSI_ALONE_DETAIL))
        else:
            out.append(GateResult(code, passed, value, thr))
    return out


def _avoid(cfg: StrategyConfig, g: GateInputs) -> GateResult | None:
    return avoid_entry(cfg, g.micro) if cfg.gates.live_avoid_entry_filter and g.micro is not None else None


def evaluate_gates(cfg: StrategyConfig, g: GateInputs) -> list[GateResult]:
    """Gates 1–12 (and divergence_required when enabled) for the direction sign(finalScore)."""
    rows, n = kernel_gates(cfg, g)
    out = gates_from_rows(rows, n, final_score=g.final_score, mtf_alignment=g.mtf_alignment, mtf_gap=g.mtf_gap)
    extra = _avoid(cfg, g)
    if extra is not None:
        out.append(extra)
    return out


class LazyGates(Sequence[GateResult]):
    """The gates of one decision, as the kernel wrote them; the ``GateResult`` list is built when first read.

    Most bars score far below the entry threshold, and the backtest reads only whether a decision passed (one flag
    of the kernel's rows): the results and their explanations are built only when the list is read in full
    (``failing``, ``to_dict``, iteration), once. ``extra``: the Python-only avoid_entry result, appended last.
    """

    __slots__ = ("_align", "_extra", "_gap", "_list", "_n", "_passed", "_rows", "_x")

    def __init__(
        self,
        rows: npt.NDArray[np.float64],
        n: int,
        passed: bool,
        *,
        final_score: float,
        mtf_alignment: str | None,
        mtf_gap: float | None,
        extra: GateResult | None = None,
    ) -> None:
        """``rows``: the kernel's first ``n`` gate rows (the caller's own copy: it is kept); ``passed``: they all
        passed."""
        self._rows, self._n, self._passed = rows, n, passed
        self._x, self._align, self._gap, self._extra = final_score, mtf_alignment, mtf_gap, extra
        self._list: list[GateResult] | None = None

    @property
    def passed(self) -> bool:
        return self._passed and (self._extra is None or self._extra.passed)

    def _all(self) -> list[GateResult]:
        if self._list is None:
            out = gates_from_rows(
                self._rows, self._n, final_score=self._x, mtf_alignment=self._align, mtf_gap=self._gap
            )
            if self._extra is not None:
                out.append(self._extra)
            self._list = out
        return self._list

    @overload
    def __getitem__(self, index: int) -> GateResult: ...

    @overload
    def __getitem__(self, index: slice) -> list[GateResult]: ...

    def __getitem__(self, index: int | slice) -> GateResult | list[GateResult]:
        return self._all()[index]

    def __len__(self) -> int:
        return len(self._all())

    def __iter__(self) -> Iterator[GateResult]:
        return iter(self._all())

    def __eq__(self, other: object) -> bool:
        return self._all() == (list(other) if isinstance(other, LazyGates) else other)

    __hash__ = None  # type: ignore[assignment]  # like the list it stands for

    def __repr__(self) -> str:
        return repr(self._all())


def avoid_entry(cfg: StrategyConfig, m: MicroInputs) -> GateResult:
    """§11 live block-only filter: wide spread, extreme funding, one-sided tape."""
    a = cfg.microstructure.avoid_entry
    reasons = []
    if m.spread_pct is not None and m.spread_pct > a.max_spread_pct:
        reasons.append(f"spread {m.spread_pct:.4f}% > {a.max_spread_pct}%")
    if m.funding_rate_pct is not None and abs(m.funding_rate_pct) > a.max_abs_funding_rate_pct:
        reasons.append(f"|funding| {abs(m.funding_rate_pct):.4f}% > {a.max_abs_funding_rate_pct}%")
    if m.buy_sell_ratio is not None and not a.buy_sell_ratio_low <= m.buy_sell_ratio <= a.buy_sell_ratio_high:
        reasons.append(
            f"buy/sell ratio {m.buy_sell_ratio:.2f} outside [{a.buy_sell_ratio_low}, {a.buy_sell_ratio_high}]"
        )
    return GateResult("avoid_entry", not reasons, detail="; ".join(reasons))
