"""§10.10 monitored live: an alert when the mark comes within the minimum liquidation buffer (5 %) of a position's
liquidation price, using the exchange's own liquidation price when it has reported one (it knows the risk-limit
tier and the margin really posted) and the spec's isolated formula otherwise.

Once per approach: at the leverage cap the buffer is at its minimum from the entry on, so a mark hovering around
it would otherwise alert on every tick; the alert is armed again once the buffer is half a point clear of it.
"""

from __future__ import annotations

from decimal import Decimal

from engine.config.strategy import StrategyConfig
from engine.events import LiquidationNear
from engine.risk.formulas import HUNDRED, liquidation_buffer, liquidation_price
from engine.runtime.protection import Protected

REARM_MARGIN = Decimal("0.005")  # the buffer must clear the minimum by this much before a new alert


class LiquidationWatch:
    """Per symbol: the exchange-reported liquidation price and whether the current approach was announced."""

    def __init__(self, cfg: StrategyConfig) -> None:
        self.minimum = cfg.risk_management.min_liquidation_buffer
        self.cfg = cfg
        self.reported: dict[str, Decimal] = {}
        self.alerted: set[str] = set()

    def note_exchange(self, symbol: str, liquidation: Decimal | None) -> None:
        """The liquidation price from the exchange's position (reconciliation); ignored when absent or not positive."""
        if liquidation is not None and liquidation > 0:
            self.reported[symbol] = liquidation

    def forget(self, symbol: str) -> None:
        """The position is gone: a new one starts from the formula and a fresh alert."""
        self.reported.pop(symbol, None)
        self.alerted.discard(symbol)

    def check(self, p: Protected, mark: Decimal, now_ms: int, tick: Decimal) -> LiquidationNear | None:
        """The alert to publish for this mark, or None (the formula's price is shown to the contract's tick)."""
        if mark <= 0:
            return None
        exchange = self.reported.get(p.symbol)
        liq = exchange if exchange is not None else liquidation_price(self.cfg, p.side, p.entry, p.leverage)
        if exchange is None and tick > 0:
            liq = (liq / tick).quantize(Decimal(1)) * tick
        buffer = liquidation_buffer(p.side, mark, liq)
        if buffer >= self.minimum + REARM_MARGIN:
            self.alerted.discard(p.symbol)
            return None
        if buffer >= self.minimum or p.symbol in self.alerted:
            return None
        self.alerted.add(p.symbol)
        return LiquidationNear(
            ts_ms=now_ms,
            symbol=p.symbol,
            side=p.side.value,
            mark=mark,
            liquidation=liq,
            buffer_pct=(buffer * HUNDRED).quantize(Decimal("0.01")),
            min_pct=(self.minimum * HUNDRED).quantize(Decimal("0.01")),
            stop=p.stop,
            source="exchange" if exchange is not None else "formula",
        )
