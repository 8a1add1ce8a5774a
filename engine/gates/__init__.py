"""Entry gates (spec §9.3) and the shared GateResult the pre-trade risk checks (§9.4) also return."""

from engine.gates.result import GateResult, failing_reasons

__all__ = ["GateResult", "failing_reasons"]
