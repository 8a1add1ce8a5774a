"""The reference's worked signing example (§2.4), byte for byte."""

from __future__ import annotations

from exchange.errors import (
    AuthError,
    DuplicateClientOidError,
    InsufficientFundsError,
    InvalidRequestError,
    RateLimitedError,
    RetryableError,
    TimestampError,
    error_for,
)
from exchange.ids import is_valid_client_oid, new_client_oid
from exchange.signing import Credentials, b64_hmac, compact_json, sign_headers

CREDS = Credentials("67f0a1b2c3d4e5f601234567", "sim-secret-2d9c4b1a-0000-4000-8000-000000000001", "sim-passphrase")
TS = 1700000000000


def test_worked_example_post_order() -> None:
    body = compact_json(
        {
            "clientOid": "test-0001",
            "side": "buy",
            "symbol": "XBTUSDTM",
            "type": "limit",
            "price": "30000",
            "size": 1,
            "leverage": 5,
            "marginMode": "ISOLATED",
            "timeInForce": "GTC",
        }
    )
    assert body == (
        '{"clientOid":"test-0001","side":"buy","symbol":"XBTUSDTM","type":"limit","price":"30000",'
        '"size":1,"leverage":5,"marginMode":"ISOLATED","timeInForce":"GTC"}'
    )
    h = sign_headers(CREDS, "POST", "/api/v1/orders", body, TS)
    assert h["KC-API-SIGN"] == "ZA8IiEN47OIL/dHKlzMDwxUT+rDhIH9MeOIek36wY3Q="
    assert h["KC-API-PASSPHRASE"] == "w+bzC5RSpCL0IJyHc34yGtWd/Pm1cba+gvW3T6p/CL4="
    assert (h["KC-API-TIMESTAMP"], h["KC-API-KEY-VERSION"], h["KC-API-KEY"]) == ("1700000000000", "2", CREDS.key)


def test_worked_example_get_delete_and_kline() -> None:
    assert sign_headers(CREDS, "GET", "/api/v1/position?symbol=XBTUSDTM", "", TS)["KC-API-SIGN"] == (
        "OTaVd0QsXj+OrnWCiXcY2CogFUXdL+5FSTA+MGM+nyw="
    )
    assert sign_headers(CREDS, "delete", "/api/v3/orders?symbol=XBTUSDTM", "", TS)["KC-API-SIGN"] == (
        "7UMEjZGx0BaHbzjf/U/mj0kdvWTh0G6TvRAU87BjqcM="
    )
    path = "/api/v1/kline/query?symbol=XBTUSDTM&granularity=60&from=1700000000000&to=1700003600000"
    assert sign_headers(CREDS, "GET", path, "", TS)["KC-API-SIGN"] == "Xl89XB7Bd2jnk281evPX3NQ1lfYGHPlJ0QLpUlsr7xo="


def test_published_hmac_vectors_and_v1_passphrase() -> None:
    assert b64_hmac("test_api_secret", "test_plain") == "jie/gxS38wLFFaBwl/cAzFbAzlI8MIny96jSXrB+iP4="
    assert b64_hmac(
        "f03a5284-5c39-4aaa-9b20-dea10bdcf8e3", '1547015186532POST/api/v1/deposit-addresses{"currency":"BTC"}'
    ) == ("7QP/oM0ykidMdrfNEUmng8eZjg/ZvPafjIqmxiVfYu4=")
    v1 = Credentials(CREDS.key, CREDS.secret, CREDS.passphrase, version=1)
    assert sign_headers(v1, "GET", "/x", "", TS)["KC-API-PASSPHRASE"] == "sim-passphrase"
    assert CREDS.secret not in repr(CREDS) and CREDS.passphrase not in repr(CREDS)


def test_error_classes_say_what_to_do() -> None:
    assert isinstance(error_for("429000", "Too Many Requests", 429), RateLimitedError)
    assert isinstance(error_for("400002", "ts", 400), TimestampError)
    assert isinstance(error_for("400005", "sign", 401), AuthError)
    assert isinstance(error_for("300003", "Balance not enough", 200), InsufficientFundsError)
    assert isinstance(error_for("300018", "dup", 200), DuplicateClientOidError)
    assert isinstance(error_for("500000", "oops", 500), RetryableError)
    err = error_for("100001", "bad param", 200)
    assert isinstance(err, InvalidRequestError) and not isinstance(err, RetryableError)
    assert (err.code, str(err)) == ("100001", "100001: bad param")


def test_client_oids_are_unique_and_valid() -> None:
    oids = {new_client_oid() for _ in range(1000)}
    assert len(oids) == 1000 and all(is_valid_client_oid(o) and len(o) <= 40 for o in oids)
    assert not is_valid_client_oid("bad oid!")


def test_order_prices_are_never_in_scientific_notation() -> None:
    """str(Decimal) writes 0.000000123 as "1.23E-7", which the exchange does not take for a price; contracts of
    meme coins are priced that low. The body (the signed bytes) writes every price in full."""
    from decimal import Decimal

    from exchange.models import OrderRequest, OrderSide, OrderType, StopDirection

    limit = OrderRequest("PEPEUSDTM", OrderSide.BUY, 10, type=OrderType.LIMIT, price=Decimal("0.000000123"))
    stop = OrderRequest(
        "PEPEUSDTM", OrderSide.SELL, 10, reduce_only=True, stop=StopDirection.DOWN, stop_price=Decimal("1.2E-7")
    )
    assert limit.body()["price"] == "0.000000123"
    assert stop.body()["stopPrice"] == "0.00000012"
    assert (
        OrderRequest("X", OrderSide.BUY, 1, type=OrderType.LIMIT, price=Decimal("2000.40")).body()["price"] == "2000.40"
    )
