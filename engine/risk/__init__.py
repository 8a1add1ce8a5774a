"""Pure Decimal risk math (spec §9.4, §10): leverage, sizing, SL/TP, break-even, lock, trailing, limits."""

from engine.risk.contract import ContractSpec, ContractSpecError, load_contract_specs, require_spec
from engine.risk.formulas import (
    InitialLevels,
    PositionSize,
    RiskInputError,
    TradePnl,
    break_even_price,
    gross_roi,
    initial_levels,
    liquidation_buffer,
    liquidation_price,
    position_size,
    price_at_roi,
    select_leverage,
    trade_pnl,
)
from engine.risk.limits import RiskState
from engine.risk.pretrade import EntryProposal, pretrade_checks
from engine.risk.stops import StopManager, StopReason, StopUpdate

__all__ = [
    "ContractSpec",
    "ContractSpecError",
    "EntryProposal",
    "InitialLevels",
    "PositionSize",
    "RiskInputError",
    "RiskState",
    "StopManager",
    "StopReason",
    "StopUpdate",
    "TradePnl",
    "break_even_price",
    "gross_roi",
    "initial_levels",
    "liquidation_buffer",
    "liquidation_price",
    "load_contract_specs",
    "position_size",
    "pretrade_checks",
    "price_at_roi",
    "require_spec",
    "select_leverage",
    "trade_pnl",
]
