"""One symbol's strategy: candles → indicators → signals → score → MTF → confidence → gates → Decision.

The same object runs in backtests and live; only who feeds the candles differs. The caller feeds a
confirmation candle only once it has closed (close time ≤ the primary bar's close), so there is no lookahead.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.config.strategy import StrategyConfig
from engine.gates.entry import LazyGates, MicroInputs, avoid_entry, not_ready
from engine.gates.gate_kernel import new_gates_out
from engine.gates.result import GateResult, failing_reasons
from engine.indicators import IndicatorParams, IndicatorSet, IndicatorSnapshot
from engine.indicators.layout import N_SNAP
from engine.models import Candle, timeframe_ms
from engine.scoring.codes import INDICATORS, MAX_SIGNALS, N_INDICATORS, SIG_COLUMNS
from engine.scoring.detect_kernel import (
    detect_reset,
    detect_step,
    detector_params,
    new_outputs,
    ready_names,
    signals_from_rows,
)
from engine.scoring.mtf import (
    Combined,
    Penalties,
    combined_from_row,
    penalties_from_row,
)
from engine.scoring.params import score_params
from engine.scoring.score_kernel import (
    CLASSES,
    D_CLASS,
    D_CONFIDENCE,
    D_DIRECTION,
    D_N_GATES,
    D_PASSED,
    decide,
    decide_once,
    new_decision_row,
    new_tf_row,
)
from engine.scoring.signals import Direction, Signal
from engine.scoring.timeframe import (
    TimeframeResult,
    ready_mask,
    row_from_snapshot,
    row_from_timeframe_result,
    rows_from_signals,
    score_timeframe,
    timeframe_result_from_row,
)

TRIGGER_EXCLUDED = frozenset({"rsi"})  # the kernel: score_kernel._decide_once skips I_RSI for gate 10


class CandleOrderError(ValueError):
    """A candle at or before the last one applied: refused, never applied twice."""


_NAN = float("nan")


class TimeframeState:
    """Indicators and detectors of one timeframe, plus the closes the chop penalty needs.

    The detectors are the compiled ``detect_step``; its input ``row`` and raw outputs stay readable for the
    compiled core (``sig``/``nsig``, ``ready_mask``, and ``det_ip``/``det_fp``/``det_state``), decoded into
    ``signals`` and ``ready`` for the Python scoring."""

    def __init__(self, cfg: StrategyConfig, required: str, timeframe: str) -> None:
        self.cfg = cfg
        self.timeframe = timeframe
        self.step = timeframe_ms(timeframe)
        self.last_ts: int | None = None
        self.gaps = 0
        self.indicators = IndicatorSet(IndicatorParams.from_config(cfg))
        self.det_ip, self.det_fp, state_len = detector_params(cfg)
        self.det_state = np.zeros(state_len, dtype=np.float64)
        detect_reset(self.det_ip, self.det_fp, self.det_state)
        self.detector_names = tuple(n for n in INDICATORS if cfg.indicators.get(n).enabled)
        self.row = np.full(N_SNAP, np.nan, dtype=np.float64)
        self.sig, self.ready_mask = new_outputs()
        self.nsig = 0
        self.required = tuple(n.strip() for n in required.split(",") if n.strip())
        self.closes: deque[float] = deque(maxlen=cfg.confidence.penalties.chop_net_move_bars + 1)
        self.snapshot: IndicatorSnapshot | None = None
        self.signals: list[Signal] = []
        self.ready: tuple[str, ...] = ()
        # Every enabled detector ready on the last bar (from the kernel's mask, every bar): ``not_ready_reason``
        # then lists none without a scan. Once true it stays true until a gap (the snapshot fields, once defined,
        # stay defined: tests/scoring/test_per_bar_shortcuts.py).
        self._all_ready = False

    def update(self, candle: Candle) -> int:
        """Apply a closed candle; returns how many bars were missing before it (0 normally).

        A gap is never bridged: the indicators start their warm-up again from this candle.
        """
        missing = 0
        if self.last_ts is not None:
            if candle.ts <= self.last_ts:
                raise CandleOrderError(
                    f"{self.timeframe} candle {candle.ts} is not after the last one applied ({self.last_ts})"
                )
            missing = (candle.ts - self.last_ts) // self.step - 1
            if missing:
                self.gaps += 1
                self.reset()
        self.last_ts = candle.ts
        snap = self.indicators.update(candle)
        self.snapshot = snap
        self.closes.append(candle.close)
        row = self.row
        row_from_snapshot(snap, row)
        self.nsig = n = detect_step(self.det_ip, self.det_fp, self.det_state, row, self.sig, self.ready_mask)
        self.signals = signals_from_rows(self.sig, n)
        self.ready = ready_names(self.ready_mask)
        self._all_ready = len(self.ready) == len(self.detector_names)
        return missing

    def not_ready_reason(self) -> str | None:
        """Why this timeframe cannot score yet (§2 warm-up and the AO requirement), or None."""
        bars = self.indicators.bars
        if bars < self.cfg.timeframes.min_candles:
            return f"{bars} of {self.cfg.timeframes.min_candles} candles"
        missing = [] if self._all_ready else [n for n in self.detector_names if n not in self.ready]
        if self.cfg.gates.require_ao_when_enabled:
            missing += [n for n in self.required if n not in self.ready and n not in missing]
        return f"indicators not ready: {', '.join(missing)}" if missing else None

    def net_move(self) -> float | None:
        n = self.cfg.confidence.penalties.chop_net_move_bars
        if len(self.closes) <= n or self.closes[0] == 0:
            return None
        return abs(self.closes[-1] - self.closes[0]) / self.closes[0]

    def reset(self) -> None:
        """Forget every indicator and detector (the candle clock and gap count stay)."""
        self.indicators.reset()
        detect_reset(self.det_ip, self.det_fp, self.det_state)
        self.nsig = 0
        self.closes.clear()
        self.snapshot, self.signals, self.ready = None, [], ()
        self._all_ready = False


@dataclass(slots=True)
class Decision:
    """One primary bar's verdict, explaining itself: scores, signals, confidence, every gate.

    Treat as immutable. Not a frozen dataclass because one is built for every symbol on every bar, and a frozen
    one's __init__ sets each of its 16 fields through object.__setattr__: ~5× the cost (5.8 µs against 1.1 µs)."""

    symbol: str
    ts: int
    close: float
    final_score: float
    classification: str
    direction: Direction
    confidence: float
    atr_pct: float | None
    gates: Sequence[GateResult]  # a LazyGates from the pipeline: built when first read
    primary: TimeframeResult | None = None
    confirmation: TimeframeResult | None = None
    combined: Combined | None = None
    penalties: Penalties | None = None
    prev_score: float = 0.0
    strict: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        gates = self.gates
        if isinstance(gates, LazyGates):
            return gates.passed  # never empty; stops at the first failing gate unless already built
        return bool(gates) and all(g.passed for g in gates)

    @property
    def failing(self) -> list[str]:
        return failing_reasons(self.gates)

    @property
    def side(self) -> str | None:
        """ "long" / "short" when the decision passed, else None."""
        if not self.passed:
            return None
        return "long" if self.direction is Direction.BULLISH else "short"

    def summary(self) -> dict[str, Any]:
        """The verdict without the breakdown: small enough to record for every symbol on every bar."""
        failing = self.failing  # builds the gate list once; ``passed`` then reads it
        out = {
            "symbol": self.symbol,
            "ts": self.ts,
            "close": self.close,
            "final_score": self.final_score,
            "prev_score": self.prev_score,
            "classification": self.classification,
            "direction": self.direction.label,
            "confidence": self.confidence,
            "atr_pct": self.atr_pct,
            "strict": self.strict,
            "passed": self.passed,
            "failing": failing,
            "explained": False,
        }
        micro = self.extra.get("micro")  # the live shadow score (engine.runtime.microstructure), never a backtest's
        if micro is not None:
            out["micro"] = micro
        return out

    def to_dict(self) -> dict[str, Any]:
        """The summary plus the whole breakdown: every gate, both timeframes, MTF and penalties."""
        return {
            **self.summary(),
            "explained": True,
            "gates": [g.to_dict() for g in self.gates],
            "primary": None if self.primary is None else self.primary.to_dict(),
            "confirmation": None if self.confirmation is None else self.confirmation.to_dict(),
            "mtf": None if self.combined is None else self.combined.to_dict(),
            "penalties": None
            if self.penalties is None
            else {
                "choppy": self.penalties.choppy,
                "volatility": self.penalties.vol_penalty,
                "conflicts": self.penalties.conflicts,
            },
        }


class SymbolPipeline:
    """The strategy for one symbol over its primary and confirmation timeframes."""

    def __init__(self, cfg: StrategyConfig, symbol: str, *, live: bool = False) -> None:
        self.cfg = cfg
        self.symbol = symbol
        self.live = live
        tf = cfg.timeframes
        self.primary = TimeframeState(cfg, tf.primary_required_indicators, tf.primary)
        self.confirmation = TimeframeState(cfg, tf.confirmation_required_indicators, tf.confirmation)
        self._confirmation_result: TimeframeResult | None = None
        self.prev_score = 0.0
        self._k = _KernelArrays(cfg)

    def reset(self) -> None:
        """After a candle gap: both timeframes warm up again (never bridged)."""
        self.primary.reset()
        self.confirmation.reset()
        self._confirmation_result = None
        self.prev_score = 0.0

    def on_confirmation_candle(self, candle: Candle) -> None:
        """Feed a CLOSED confirmation-timeframe candle."""
        st = self.confirmation
        if st.update(candle):
            self._confirmation_result = None
        self._confirmation_result = (
            None if st.not_ready_reason() else score_timeframe(self.cfg, st.signals, st.ready, st.snapshot)
        )

    def on_primary_candle(self, candle: Candle, *, drawdown_pct: float, micro: MicroInputs | None = None) -> Decision:
        """Feed a CLOSED primary candle and decide."""
        cfg = self.cfg
        st = self.primary
        missing = st.update(candle)
        if missing:
            self.prev_score = 0.0
        snap = st.snapshot
        if snap is None:  # pragma: no cover - update() always sets it
            raise RuntimeError("primary timeframe has no snapshot after an update")
        atr_pct = snap.atr_pct
        prev = self.prev_score
        reason = st.not_ready_reason()
        if reason is None and cfg.timeframes.mtf_enabled:
            c_reason = self.confirmation.not_ready_reason()
            reason = None if c_reason is None else f"confirmation timeframe: {c_reason}"
        if reason is not None:
            self.prev_score = 0.0
            if missing:
                reason = f"gap of {missing} missing {cfg.timeframes.primary} bars, warming up again: {reason}"
            return Decision(
                self.symbol,
                candle.ts,
                candle.close,
                0.0,
                "NEUTRAL",
                Direction.NEUTRAL,
                0.0,
                atr_pct,
                not_ready(reason),
                prev_score=prev,
                strict=cfg.strict_mode.enabled,
                extra={"missing_bars": missing} if missing else {},
            )
        # The kernel re-decides without standalone RSI when it is ready and the decision passes (§9.3 gate 11).
        decision = self._decide(candle, snap, st.signals, st.ready, drawdown_pct, micro, prev)
        self.prev_score = decision.final_score
        return decision

    def _decide(
        self,
        candle: Candle,
        snap: IndicatorSnapshot,
        signals: list[Signal],
        ready: tuple[str, ...],
        drawdown_pct: float,
        micro: MicroInputs | None,
        prev: float,
        *,
        rsi_alone: bool | None = None,
    ) -> Decision:
        """The decision of a ready primary bar by the compiled ``decide`` (with the rsi_alone re-decision), or one
        pass with the given ``rsi_alone``. A failing avoid_entry (live, Python-only) fails the first pass already,
        so then there is no re-decision, as in the reference."""
        cfg = self.cfg
        if snap.ema9 is None or snap.ema50 is None or snap.ema200 is None:  # pragma: no cover - readiness
            raise RuntimeError("EMA trend not ready although the timeframe is")
        k = self._k
        sig, nsig = rows_from_signals(signals, k.sig)
        ready_mask(ready, k.ready)
        row_from_snapshot(snap, k.row)
        confirmation = self._confirmation_result
        if confirmation is not None and confirmation is not k.c_src:
            row_from_timeframe_result(confirmation, k.c_out)
            k.c_src = confirmation
        net_move = self.primary.net_move()
        nm = math.nan if net_move is None else net_move
        has_c = confirmation is not None
        extra = (
            avoid_entry(cfg, micro) if self.live and micro is not None and cfg.gates.live_avoid_entry_filter else None
        )
        if rsi_alone is not None or (extra is not None and not extra.passed):
            flag = -1 if rsi_alone is None else int(rsi_alone)
            decide_once(
                k.ip,
                k.fp,
                sig,
                nsig,
                k.ready,
                k.row,
                k.p_out,
                k.c_out,
                has_c,
                nm,
                prev,
                drawdown_pct,
                flag,
                k.out,
                k.gates,
            )
        else:
            decide(
                k.ip, k.fp, sig, nsig, k.ready, k.row, k.p_out, k.c_out, has_c, nm, prev, drawdown_pct, k.out, k.gates
            )
        out = k.out
        combined = combined_from_row(out)
        n = int(out[D_N_GATES])
        x = combined.final_score
        gates = LazyGates.from_rows(
            k.gates[:n].copy(),
            n,
            bool(out[D_PASSED]),
            final_score=x,
            mtf_alignment=combined.alignment,
            mtf_gap=combined.gap,
            extra=extra,
        )
        return Decision(
            self.symbol,
            candle.ts,
            candle.close,
            x,
            CLASSES[int(out[D_CLASS])],
            Direction(int(out[D_DIRECTION])),
            float(out[D_CONFIDENCE]),
            snap.atr_pct,
            gates,
            primary=timeframe_result_from_row(k.p_out, sig, nsig, ready, signals),
            confirmation=confirmation,
            combined=combined,
            penalties=penalties_from_row(out),
            prev_score=prev,
            strict=cfg.strict_mode.enabled,
        )


class _KernelArrays:
    """The kernel's parameters and the rows one pipeline reuses on every bar (no allocation per bar)."""

    __slots__ = ("c_out", "c_src", "fp", "gates", "ip", "out", "p_out", "ready", "row", "sig")

    def __init__(self, cfg: StrategyConfig) -> None:
        self.ip, self.fp = score_params(cfg)
        self.sig = np.zeros((MAX_SIGNALS, SIG_COLUMNS), dtype=np.int64)
        self.ready = np.zeros(N_INDICATORS, dtype=np.int64)
        self.row = np.full(N_SNAP, np.nan, dtype=np.float64)
        self.p_out = new_tf_row()
        self.c_out = new_tf_row()
        self.c_src: TimeframeResult | None = None  # the confirmation result c_out was encoded from
        self.out = new_decision_row()
        self.gates = new_gates_out()
