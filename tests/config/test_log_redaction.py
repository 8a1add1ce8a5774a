"""No secret reaches a log line, whatever shape the logged value has: exception objects, sets, bytes, objects
with a repr, in the JSON renderer and the console renderer alike."""

from __future__ import annotations

import logging

import pytest
import structlog

from engine.logging import configure_logging

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
