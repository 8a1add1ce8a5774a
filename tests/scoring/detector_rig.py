"""Run the compiled detectors on hand-made bars: the tests' stand-in for constructing one Python detector."""

from __future__ import annotations

import numpy as np

from engine.config import StrategyConfig
from engine.indicators.layout import N_SNAP, S_CLOSE, S_HIGH, S_LOW, S_OPEN, S_VOLUME, SNAPSHOT_COLUMNS
from engine.scoring.codes import INDICATORS
from engine.scoring.detect_kernel import (
    detect_reset,
    detect_step,
    detector_params,
    new_outputs,
    ready_names,
    signals_from_rows,
)
from engine.scoring.signals import Signal


def only(cfg: StrategyConfig, *names: str) -> StrategyConfig:
    """``cfg`` with only the detectors ``names`` enabled."""
    ind = cfg.indicators
    update = {n: ind.get(n).model_copy(update={"enabled": n in names}) for n in INDICATORS}
    return cfg.model_copy(update={"indicators": ind.model_copy(update=update)})


class DetectorRig:
    """The kernel's detectors for ``cfg`` (only ``names`` enabled when given), fed one hand-made bar at a time."""

    def __init__(self, cfg: StrategyConfig, *names: str) -> None:
        self.ip, self.fp, state_len = detector_params(only(cfg, *names) if names else cfg)
        self.state = np.zeros(state_len, dtype=np.float64)
        detect_reset(self.ip, self.fp, self.state)
        self.sig, self.ready_mask = new_outputs()
        self.ready: tuple[str, ...] = ()

    def step(self, close: float = 100.0, volume: float = 1.0, **fields: float) -> list[Signal]:
        """One bar with the given snapshot fields (every other one undefined): the signals of the ready detectors."""
        row = np.full(N_SNAP, np.nan)
        row[[S_OPEN, S_HIGH, S_LOW, S_CLOSE]] = close
        row[S_VOLUME] = volume
        for name, value in fields.items():
            row[SNAPSHOT_COLUMNS[name]] = value
        n = detect_step(self.ip, self.fp, self.state, row, self.sig, self.ready_mask)
        self.ready = ready_names(self.ready_mask)
        return signals_from_rows(self.sig, n)
