"""How money and prices are written for a person (Telegram, /status, /pnl, the dashboard).

The books keep full Decimal precision (a volume-weighted exit price of a trade closed in several fills has 28
digits); a person reads cents, and a price to ten significant digits. Rounding is half-up, set here rather than by
whatever decimal context is in force, never a negative zero, never scientific notation.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

CENT = Decimal("0.01")
PRICE_DIGITS = 10  # significant digits of a price shown: ample for every tick size KuCoin lists


def _decimal(value: Any) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


def usdt(value: Any, *, signed: bool = False) -> str:
    """``1,234.57 USDT`` (``+1,234.57 USDT`` when ``signed``): rounded half-up to the cent."""
    d = _decimal(value).quantize(CENT, rounding=ROUND_HALF_UP)
    return f"{d:{'+' if signed else ''}z,.2f} USDT"


def price_text(value: Any) -> str:
    """A price as a plain decimal: at most ten significant digits (half-up), trailing zeros kept to the cent."""
    d = _decimal(value)
    if not d.is_finite() or d == 0:
        return f"{d:f}" if d.is_finite() else str(d)
    exp = min(d.adjusted() - PRICE_DIGITS + 1, -2)
    d = d.quantize(Decimal(1).scaleb(exp), rounding=ROUND_HALF_UP)
    text = f"{d:f}"
    whole, _, frac = text.partition(".")
    frac = frac.rstrip("0").ljust(2, "0")
    return f"{whole}.{frac}"


def number_text(value: Any, places: int = 2) -> str:
    """A figure of a halt or a limit: whole numbers as they are, others rounded half-up to ``places`` decimals;
    text that is not a number passes through."""
    try:
        d = _decimal(value)
    except (InvalidOperation, ValueError):
        return str(value)
    if not d.is_finite():
        return str(value)
    if d == d.to_integral_value():
        return f"{d.quantize(Decimal(1)):zf}"
    return f"{d.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP):zf}"
