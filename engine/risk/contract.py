"""Contract specifications: the only place lots meet base units. A symbol without a spec is never traded."""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path


class ContractSpecError(ValueError):
    """A contract spec is missing or malformed; trading that symbol is refused."""


@dataclass(frozen=True, slots=True)
class ContractSpec:
    """KuCoin linear perpetual metadata: ``multiplier`` base units per lot, ``lot_size`` lots per step."""

    symbol: str
    multiplier: Decimal
    lot_size: int
    tick_size: Decimal
    max_leverage: int
    taker_fee: Decimal = Decimal("0.0006")
    maker_fee: Decimal = Decimal("0.0002")
    maintenance_margin_rate: Decimal = Decimal("0.005")

    def __post_init__(self) -> None:
        if self.multiplier <= 0 or self.tick_size <= 0 or self.lot_size < 1 or self.max_leverage < 1:
            raise ContractSpecError(f"{self.symbol}: multiplier, tick size, lot size and max leverage must be positive")

    def base_quantity(self, lots: int) -> Decimal:
        """Base-currency amount of ``lots`` contracts."""
        return self.multiplier * lots


def _dec(value: object) -> Decimal:
    return Decimal(str(value))


def contract_spec_from_payload(payload: dict[str, object]) -> ContractSpec:
    """Build a spec from a KuCoin ``/api/v1/contracts`` entry (field names are the exchange's)."""
    try:
        return ContractSpec(
            symbol=str(payload["symbol"]),
            multiplier=_dec(payload["multiplier"]),
            lot_size=int(str(payload["lotSize"])),
            tick_size=_dec(payload["tickSize"]),
            max_leverage=int(str(payload["maxLeverage"])),
            taker_fee=_dec(payload.get("takerFeeRate", "0.0006")),
            maker_fee=_dec(payload.get("makerFeeRate", "0.0002")),
            maintenance_margin_rate=_dec(payload.get("maintainMargin", "0.005")),
        )
    except (KeyError, ValueError, ArithmeticError) as exc:
        raise ContractSpecError(f"malformed contract payload {payload.get('symbol', '?')}: {exc}") from exc


def load_contract_specs(path: Path) -> dict[str, ContractSpec]:
    """Specs from a ``contracts.json`` file shaped like ``shared/data/kucoin-futures/contracts.json``."""
    try:
        raw = json.loads(path.read_text(), parse_float=Decimal)
    except FileNotFoundError:
        raise ContractSpecError(f"contract file not found: {path}") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ContractSpecError(f"contract file unreadable: {path}: {exc}") from exc
    entries = raw.get("contracts", raw) if isinstance(raw, dict) else raw
    items = entries.values() if isinstance(entries, dict) else entries
    return {spec.symbol: spec for spec in (contract_spec_from_payload(e) for e in items)}


def require_spec(specs: dict[str, ContractSpec], symbol: str) -> ContractSpec:
    """The spec of ``symbol``; refuses to guess a multiplier (the bug that turned 0.1 BCH into 10 lots elsewhere)."""
    try:
        return specs[symbol]
    except KeyError:
        raise ContractSpecError(f"no contract spec for {symbol}: refusing to trade it") from None
