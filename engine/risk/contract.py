"""Contract specifications: the only place lots meet base units. A symbol without a spec is never traded."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path


class ContractSpecError(ValueError):
    """A contract spec is missing or malformed; trading that symbol is refused."""


OPEN = "Open"  # the only contract status that accepts new orders (reference §4.1.2, §6.10 step 2)
DELISTED = "Closed"  # what a configured contract missing from the active listing is taken for


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
    # Init, Open, BeingSettled, Settled, Paused, Closed, CancelOnly: only Open takes new orders (§6.10 step 2)
    status: str = OPEN

    @property
    def is_open(self) -> bool:
        """New orders are accepted: anything else refuses entries (and may refuse a stop move)."""
        return self.status == OPEN

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
            status=str(payload.get("status") or OPEN),  # recorded snapshots without it were all Open
        )
    except (KeyError, ValueError, ArithmeticError) as exc:
        raise ContractSpecError(f"malformed contract payload {payload.get('symbol', '?')}: {exc}") from exc


def specs_from_payloads(
    payloads: Iterable[object], symbols: Iterable[str] | None = None
) -> tuple[dict[str, ContractSpec], dict[str, str]]:
    """The specs of ``symbols`` (every one when None) from a ``/api/v1/contracts/active`` answer, and why each
    malformed row of them was left out. One bad row must not cost the others their specs: the caller keeps
    that symbol's last good spec."""
    wanted = None if symbols is None else set(symbols)
    specs: dict[str, ContractSpec] = {}
    bad: dict[str, str] = {}
    for payload in payloads:
        if not isinstance(payload, dict):
            bad[f"row {str(payload)[:40]!r}"] = "not an object"
            continue
        symbol = str(payload.get("symbol", "?"))
        if wanted is not None and symbol not in wanted:
            continue
        try:
            specs[symbol] = contract_spec_from_payload(payload)
        except ContractSpecError as exc:
            bad[symbol] = str(exc)
    return specs, bad


def spec_changes(old: ContractSpec, new: ContractSpec) -> list[str]:
    """What changed between two specs of a contract, in words ("tick size 0.01 → 0.1"), status aside."""
    fields = (
        ("tick size", old.tick_size, new.tick_size),
        ("multiplier", old.multiplier, new.multiplier),
        ("lot size", old.lot_size, new.lot_size),
        ("max leverage", old.max_leverage, new.max_leverage),
        ("maintenance margin rate", old.maintenance_margin_rate, new.maintenance_margin_rate),
    )
    return [f"{name} {a} → {b}" for name, a, b in fields if a != b]


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
