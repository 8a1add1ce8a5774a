"""Spec §7.2, §7.3 and §8: combine the primary and confirmation timeframes, then apply confidence penalties.

Computed by the compiled kernels of engine/scoring/score_kernel.py; these wrappers keep the Python API.
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from engine.config.strategy import StrategyConfig
from engine.scoring.params import score_params
from engine.scoring.score_kernel import (
    D_ALIGN_BONUS,
    D_ALIGNMENT,
    D_CHOPPY,
    D_CONF_POINTS,
    D_CONFLICTS,
    D_FINAL_SCORE,
    D_GAP,
    D_MTF_PASSED,
    D_PEN_TOTAL,
    D_VOL_PENALTY,
    D_WEIGHTED,
    combine_k,
    final_confidence_k,
    new_decision_row,
    penalties_k,
)
from engine.scoring.timeframe import TimeframeResult, row_from_timeframe_result


class Alignment(StrEnum):
    FULL = "full"
    PARTIAL = "partial"
    DIVERGENT = "divergent"


_ALIGNMENTS = (Alignment.FULL, Alignment.PARTIAL, Alignment.DIVERGENT)  # score_kernel.ALIGNMENTS order


class Combined(NamedTuple):
    """The final score and confidence (before penalties) with the MTF numbers behind them."""

    final_score: float
    confidence_points: int
    alignment: Alignment | None
    weighted: float
    gap: float | None
    align_bonus: float
    mtf_gate_passed: bool | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "final_score": self.final_score,
            "confidence_points": self.confidence_points,
            "alignment": None if self.alignment is None else self.alignment.value,
            "weighted": self.weighted,
            "gap": self.gap,
            "align_bonus": self.align_bonus,
            "mtf_gate_passed": self.mtf_gate_passed,
        }


def combined_from_row(out: npt.NDArray[np.float64]) -> Combined:
    """The ``Combined`` of a decision row written by ``combine_k`` / ``decide``."""
    a = int(out[D_ALIGNMENT])
    gap, mtf = float(out[D_GAP]), int(out[D_MTF_PASSED])
    return Combined(
        float(out[D_FINAL_SCORE]),
        int(out[D_CONF_POINTS]),
        None if a < 0 else _ALIGNMENTS[a],
        float(out[D_WEIGHTED]),
        None if math.isnan(gap) else gap,
        float(out[D_ALIGN_BONUS]),
        None if mtf < 0 else mtf == 1,
    )


def combine(cfg: StrategyConfig, primary: TimeframeResult, confirmation: TimeframeResult | None) -> Combined:
    """§8 and §7.2; without MTF (or without a confirmation result) the primary stands alone (kernel ``combine_k``)."""
    ip, fp = score_params(cfg)
    p = row_from_timeframe_result(primary)
    c = p if confirmation is None else row_from_timeframe_result(confirmation)
    out = new_decision_row()
    combine_k(ip, fp, p, c, confirmation is not None, out)
    return combined_from_row(out)


class Penalties(NamedTuple):
    choppy: bool
    vol_penalty: float
    conflicts: int
    total: float


def penalties_from_row(out: npt.NDArray[np.float64]) -> Penalties:
    """The ``Penalties`` of a decision row written by ``penalties_k`` / ``decide``."""
    return Penalties(bool(out[D_CHOPPY]), float(out[D_VOL_PENALTY]), int(out[D_CONFLICTS]), float(out[D_PEN_TOTAL]))


def penalties(
    cfg: StrategyConfig, atr_pct: float | None, net_move: float | None, primary: TimeframeResult
) -> Penalties:
    """§7.3: chop (ATR% < 2 and the 20-bar net move < 1 %), volatility steps, 2 per conflicting signal."""
    ip, fp = score_params(cfg)
    out = new_decision_row()
    penalties_k(
        ip,
        fp,
        math.nan if atr_pct is None else atr_pct,
        math.nan if net_move is None else net_move,
        row_from_timeframe_result(primary),
        out,
    )
    return penalties_from_row(out)


def final_confidence(c_mtf: int, pen: Penalties) -> float:
    """C_final / 100, clamped to [0, 1]."""
    return float(final_confidence_k(float(c_mtf), float(pen.total)))
