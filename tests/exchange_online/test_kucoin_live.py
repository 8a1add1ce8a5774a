"""Opt-in, read-only checks against the real KuCoin Futures API. Skipped unless ENYGMA_ONLINE_TESTS=1 and the
KUCOIN_API_* variables are set; never run in CI (these machines have no route to KuCoin)."""

from __future__ import annotations

import os

import pytest

from exchange.rest import KucoinFuturesClient
from exchange.signing import Credentials

ENABLED = os.environ.get("ENYGMA_ONLINE_TESTS") == "1" and all(
    os.environ.get(n) for n in ("KUCOIN_API_KEY", "KUCOIN_API_SECRET", "KUCOIN_API_PASSPHRASE")
)
pytestmark = pytest.mark.skipif(not ENABLED, reason="set ENYGMA_ONLINE_TESTS=1 and KUCOIN_API_* to run against KuCoin")


def _client() -> KucoinFuturesClient:
    creds = Credentials(
        os.environ["KUCOIN_API_KEY"],
        os.environ["KUCOIN_API_SECRET"],
        os.environ["KUCOIN_API_PASSPHRASE"],
        int(os.environ.get("KUCOIN_KEY_VERSION", "2")),
    )
    return KucoinFuturesClient("https://api-futures.kucoin.com", creds, spot_base_url="https://api.kucoin.com")


async def test_live_read_only_endpoints() -> None:
    async with _client() as c:
        await c.sync_time()
        contracts = {x["symbol"]: x for x in await c.contracts()}
        assert "ETHUSDTM" in contracts
        assert (await c.account_overview()).equity >= 0
        assert "Futures" in await c.check_key_permissions()
