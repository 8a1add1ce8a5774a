"""No secret reaches a log line, whatever shape the logged value has: exception objects, sets, bytes, objects
with a repr, in the JSON renderer and the console renderer alike."""

from __future__ import annotations

import logging
import os

import pytest
import structlog

from engine.logging import configure_logging
from tests.conftest import serve_on_loopback

SECRET = "s3cretPASSvalue"
TOKEN = "123456789:AAHtokenPARTxyz"


class Signed:
    def __repr__(self) -> str:
        return f"Signed(passphrase={SECRET!r})"


@pytest.mark.parametrize("json_output", [True, False], ids=["json", "console"])
def test_secrets_inside_non_string_values_are_redacted(capsys: pytest.CaptureFixture[str], json_output: bool) -> None:
    configure_logging(secrets=[SECRET, TOKEN], json_output=json_output)
    log = structlog.get_logger("t")
    log.error("obj", error=RuntimeError(f"login failed for {SECRET}"))
    log.error("set", values={SECRET})
    log.error("bytes", body=SECRET.encode())
    log.error("repr", signed=Signed())
    log.error("tuple", pair=(1, RuntimeError(TOKEN)))
    logging.getLogger("aiohttp.client").error("stdlib %s", RuntimeError(SECRET))
    err = capsys.readouterr().err
    assert err.count("\n") >= 6
    assert SECRET not in err and "AAHtokenPARTxyz" not in err, err


@pytest.mark.parametrize("json_output", [True, False], ids=["json", "console"])
def test_a_secret_as_a_mapping_key_is_redacted(capsys: pytest.CaptureFixture[str], json_output: bool) -> None:
    """The redactor cleaned a mapping's values but printed its keys as they were: ``by_account={<secret>: 3}``
    logged the secret in clear. Keys are cleaned too, and stay keys (a tuple key becomes its redacted repr)."""
    configure_logging(secrets=[SECRET], json_output=json_output)
    log = structlog.get_logger("t")
    log.error("keys", by_account={f"acct-{SECRET}": 3, "acct-main": 4}, pairs={(SECRET, 1): "x", 7: "seven"})
    err = capsys.readouterr().err
    assert SECRET not in err, err
    assert "acct-***" in err and "acct-main" in err and "('***', 1)" in err and "seven" in err, err


def test_a_log_line_that_cannot_be_written_prints_no_raw_exception(capsys: pytest.CaptureFixture[str]) -> None:
    """When the log stream cannot be written (closed, disk full), stdlib logging's ``handleError`` printed
    "--- Logging error ---" and the exception being handled, unredacted, to stderr: a reconnect hook's error naming
    the passphrase came out in clear (seen in the stream tests, whose handler outlived its stream). Production
    logging does not report its own failures (``logging.raiseExceptions = False``)."""
    configure_logging(secrets=[SECRET], json_output=True)
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    dead = open(os.devnull, "w")  # noqa: SIM115 - closed on purpose before the write
    dead.close()
    handler.setStream(dead)
    try:
        raise RuntimeError(f"reconciliation refused: KC-API-PASSPHRASE {SECRET}")
    except RuntimeError:
        structlog.get_logger("t").exception("ws.session_failed")
    printed = capsys.readouterr()
    assert "Logging error" not in printed.err and SECRET not in printed.err + printed.out


def test_websocket_token_in_a_url_is_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(secrets=[], json_output=True)
    structlog.get_logger("t").warning(
        "ws.disconnected",
        error="WSServerHandshakeError: 403, url='wss://ws-api-futures.kucoin.com/?token=2neAiuYvAU61ZDXANAGAsiL4&connectId=c1'",
    )
    err = capsys.readouterr().err
    assert "2neAiuYvAU61ZDXANAGAsiL4" not in err
    assert "connectId=c1" in err


def test_settings_objects_never_show_a_secret_in_their_repr() -> None:
    from bot.app import BotConfig
    from exchange.signing import Credentials

    shown = repr(BotConfig(token=TOKEN, allowed_user_ids=frozenset({1}), chat_ids=(1,)))
    shown += repr(Credentials("key-abcdef", SECRET, "pass-" + SECRET))
    assert "AAHtokenPARTxyz" not in shown and SECRET not in shown, shown


async def test_an_aiohttp_error_logged_as_an_object_shows_no_credential_header(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """aiohttp's ClientResponseError carries request_info with the request headers, so its repr, which the redactor
    renders for an exception object, showed 'KC-API-PASSPHRASE': '<signed passphrase>', the request's KC-API-SIGN,
    and 'Authorization': 'Basic <base64 of the proxy's user:password>' from KUCOIN_REST_URL=http://user:pass@...;
    a URL's user and password themselves were unknown to the redactor."""
    import base64
    from pathlib import Path

    import aiohttp
    from aiohttp import web

    from engine.config.settings import load_settings
    from exchange.signing import Credentials, sign_headers

    async def gateway(request: web.Request) -> web.Response:
        return web.Response(status=502, text="bad gateway")

    app = web.Application()
    app.router.add_get("/api/v1/account-overview", gateway)
    runner, port = await serve_on_loopback(app)
    url = f"http://trader:pr0xyPASSw0rd@127.0.0.1:{port}"
    for name, value in {
        "KUCOIN_REST_URL": url,
        "KUCOIN_API_KEY": "key-abcdef",
        "KUCOIN_API_SECRET": SECRET,
        "KUCOIN_API_PASSPHRASE": "pass-phrase-1",
    }.items():
        monkeypatch.setenv(name, value)
    settings = load_settings(Path("/nonexistent/.env"))
    headers = sign_headers(Credentials("key-abcdef", SECRET, "pass-phrase-1"), "GET", "/api/v1/account-overview", "", 1)
    try:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.ClientResponseError) as info:
                async with session.get(url + "/api/v1/account-overview", headers=headers) as resp:
                    resp.raise_for_status()
    finally:
        await runner.cleanup()
    configure_logging(secrets=settings.secret_values(), json_output=True)
    structlog.get_logger("t").error("exchange.failed", error=info.value)
    structlog.get_logger("t").error("exchange.url", url=url)
    err = capsys.readouterr().err
    assert "502" in err and "KC-API-PASSPHRASE" in err, err
    basic = base64.b64encode(b"trader:pr0xyPASSw0rd").decode()
    for leaked in (headers["KC-API-PASSPHRASE"], headers["KC-API-SIGN"], "key-abcdef", basic, "pr0xyPASSw0rd"):
        assert leaked not in err, (leaked, err)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (f"refused {SECRET} twice", "refused *** twice"),
        (f"GET https://api.telegram.org/bot{TOKEN}/getMe", "GET https://api.telegram.org/bot***/getMe"),
        (
            "wss://ws.example.com/endpoint?token=tok3nVALUE&connectId=1",
            "wss://ws.example.com/endpoint?token=***&connectId=1",
        ),
        ("{'KC-API-PASSPHRASE': 'signedPHRASE', 'Accept': 'json'}", "{'KC-API-PASSPHRASE': '***', 'Accept': 'json'}"),
        ("via https://user:pw0rdX@proxy:3128 refused", "via https://***@proxy:3128 refused"),
        ("threshold_cross: score 41.2 below 55", "threshold_cross: score 41.2 below 55"),
        ("min_score", "min_score"),
    ],
)
def test_the_quick_no_secret_check_lets_every_pattern_through(text: str, shown: str) -> None:
    """``Redactor`` answers a text with no ':' or '=' and no known secret at once (the event bus cleans every nested
    text of every event); each kind of secret still reaches its pattern, and a plain text comes back as itself."""
    from engine.logging import Redactor

    redactor = Redactor([SECRET, TOKEN])
    assert redactor.text(text) == shown
    assert redactor.clean({"detail": text}) == {"detail": shown}
    if text == shown:
        assert redactor.text(text) is text
