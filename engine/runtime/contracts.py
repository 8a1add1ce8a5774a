"""Contract lifecycle under a running bot: KuCoin pauses, settles, delists a contract or changes its tick size,
multiplier or lot size while positions are open. The specs read at the start are refreshed every
CONTRACT_REFRESH_S (and soon after a stream reconnect); what changed is applied to new orders and announced."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import structlog

from engine.events import ContractChanged, HealthChanged
from engine.risk.contract import DELISTED, ContractSpec, spec_changes, specs_from_payloads
from exchange.errors import ExchangeError, InvalidRequestError

if TYPE_CHECKING:
    from engine.runtime.engine import TradingEngine

log = structlog.get_logger(__name__)

CONTRACT_REFRESH_S = 720.0  # specs are read again every 12 minutes ...
CONTRACT_RETRY_S = 60.0  # ... and a minute after a refresh that failed (the last specs hold meanwhile)
CONTRACT_CHECK_S = 30.0  # how often the scheduled job looks whether a refresh is due
# Configured contracts missing from the active list are asked by name, at most this many a refresh (the position's
# first): a listing that leaves out a 500-symbol universe cost 500 lookups (1500 of the public pool's 1800 a 30 s
# window) at once. The rest are asked at the next refresh, brought forward to CONTRACT_RETRY_S.
LOOKUPS_PER_REFRESH = 10

# What an open position faces when its contract leaves Open, in the trader's words.
AT_RISK = {
    "BeingSettled": "KuCoin is settling this contract: the position may be closed by the exchange at its settlement "
    "price, and its stop can no longer be moved",
    "Settled": "KuCoin settled this contract: the position may already be closed by the exchange at its settlement "
    "price; its stop can no longer be moved",
    "Closed": "the contract is closed or delisted: KuCoin may settle the position, and its stop can no longer be "
    "moved or re-placed",
    "Paused": "trading is paused on this contract: the stop on the exchange stays where it is but cannot be moved "
    "(trailing waits) and may not fill while nothing trades, until it is Open again",
    "CancelOnly": "KuCoin accepts only cancels on this contract: the stop on the exchange stays where it is but "
    "cannot be moved until it is Open again",
}
AT_RISK_DEFAULT = "KuCoin refuses orders on this contract: the stop on the exchange stays but cannot be moved"
CHECK_ON_KUCOIN = "; check the position on KuCoin and close it by hand if you want out"


class ContractWatch:
    """Keeps the engine's contract specs current. A refresh that fails keeps the last specs and is tried again
    after CONTRACT_RETRY_S; it never raises (the engine runs on). One alert per change: a status seen again
    is not announced again, however often it flaps."""

    def __init__(
        self,
        engine: TradingEngine,
        symbols: Sequence[str],
        *,
        refresh_s: float = CONTRACT_REFRESH_S,
        retry_s: float = CONTRACT_RETRY_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.symbols = tuple(symbols)
        self.refresh_s = refresh_s
        self.retry_s = retry_s
        self.monotonic = monotonic
        self.next_due = monotonic() + refresh_s  # the start has just read them
        self.failures = 0  # refreshes failed in a row
        self._bad_told: dict[str, str] = {}  # symbol -> the malformed-row reason already reported
        self._asked: dict[str, float] = {}  # symbol -> when it was last asked by name (the longest-unasked go first)

    def stale(self) -> None:
        """After a stream reconnect: the bot may have missed a change while it was away; refresh at the next look."""
        self.next_due = 0.0

    async def tick(self) -> None:
        """The scheduled job: refresh when due."""
        if self.monotonic() >= self.next_due:
            await self.refresh()

    async def refresh(self) -> bool:
        """Read the contract list and apply it; True when it was read."""
        try:
            payloads = await self.engine.client.contracts()
        except (ExchangeError, TypeError, ValueError) as exc:  # a 5xx past the retries, a listing that is no list
            self.failures += 1
            self.next_due = self.monotonic() + self.retry_s
            log.warning(
                "contracts.refresh_failed",
                error=f"{type(exc).__name__}: {exc}",
                failures=self.failures,
                retry_in_s=self.retry_s,
                detail="the last contract specs are kept",
            )
            return False
        self.failures = 0
        self.next_due = self.monotonic() + self.refresh_s
        fresh, bad = specs_from_payloads(payloads, self.symbols)
        listed = {str(p.get("symbol")) for p in payloads if isinstance(p, dict)}
        unlisted = [s for s in self.symbols if s not in bad and s not in fresh and s not in listed]
        unlisted.sort(key=lambda s: (s not in self.engine.managed, self._asked.get(s, 0.0)))
        ask = set(unlisted[:LOOKUPS_PER_REFRESH])
        if len(unlisted) > LOOKUPS_PER_REFRESH:  # the others at the next refresh, soon
            self.next_due = min(self.next_due, self.monotonic() + self.retry_s)
        for symbol in self.symbols:
            old = self.engine.specs.get(symbol)
            if symbol in bad:
                self._malformed(symbol, bad[symbol])
                continue  # its last good spec stays
            new = fresh.get(symbol)
            if new is None and symbol in ask and old is not None:
                self._asked[symbol] = self.monotonic()
                new = await self._unlisted(old)
            if new is None or old is None:
                continue
            self._bad_told.pop(symbol, None)
            self._apply(old, new, delisted=symbol not in listed)
        return True

    async def _unlisted(self, old: ContractSpec) -> ContractSpec | None:
        """A configured contract missing from the active list: asked by name (the list may leave out a contract
        that is only paused or settling). Unknown to KuCoin: delisted, taken for Closed (no entries, never a
        crash). None when it cannot be told now (the last spec holds, the next refresh asks again)."""
        try:
            payload = await self.engine.client.contract(old.symbol)
        except InvalidRequestError:  # 100003 / 200003: no such contract any more
            return dataclasses.replace(old, status=DELISTED)
        except (ExchangeError, TypeError, ValueError) as exc:
            log.warning("contracts.lookup_failed", symbol=old.symbol, error=f"{type(exc).__name__}: {exc}")
            return None
        fresh, bad = specs_from_payloads([payload], [old.symbol])
        if old.symbol in bad:
            self._malformed(old.symbol, bad[old.symbol])
        return fresh.get(old.symbol)

    def _malformed(self, symbol: str, reason: str) -> None:
        """One bad row: said once per distinct reason; the symbol keeps its last good spec."""
        if self._bad_told.get(symbol) == reason:
            return
        self._bad_told[symbol] = reason
        log.error("contracts.malformed_row", symbol=symbol, error=reason, detail="its last good spec is kept")
        self.engine.bus.publish(
            HealthChanged(
                ts_ms=self.engine.clock(),
                component=f"contract {symbol}",
                healthy=False,
                detail=f"KuCoin sent a malformed contract row ({reason}): the last good spec is kept",
            )
        )

    def _apply(self, old: ContractSpec, new: ContractSpec, *, delisted: bool) -> None:
        changes = spec_changes(old, new)
        if old.status == new.status and not changes:
            return
        self.engine.use_spec(new)
        m = self.engine.managed.get(new.symbol)
        position = "" if m is None else f"{m.protection.side.value} {m.protection.lots} lots"
        status = new.status + (" (no longer listed by KuCoin)" if delisted and new.status == DELISTED else "")
        notes: list[str] = []
        loud = False
        if old.status != new.status:
            if new.is_open:
                notes.append("new entries allowed again")
            else:
                notes.append("no new entries on it until it is Open again")
                if m is not None:
                    loud = True
                    notes.append(AT_RISK.get(new.status, AT_RISK_DEFAULT) + CHECK_ON_KUCOIN)
        if changes:
            notes.append("new orders use the new values" + (" (the stop is moved on the new tick)" * (m is not None)))
        log.warning(
            "contract.changed",
            symbol=new.symbol,
            old_status=old.status,
            status=status,
            changes=changes,
            position=position or None,
        )
        self.engine.bus.publish(
            ContractChanged(
                ts_ms=self.engine.clock(),
                symbol=new.symbol,
                old_status=old.status,
                status=status if old.status != new.status else new.status,
                changes=changes,
                position=position,
                detail="; ".join(notes),
                loud=loud,
            )
        )
