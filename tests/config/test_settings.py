"""Runtime settings: paper by default, keys required for shadow/live, secrets redacted, .env.example complete."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from engine.config import ConfigError
from engine.config.settings import Settings, load_settings
from tests.conftest import ROOT

NO_ENV = Path("/nonexistent/.env")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)


def test_defaults_when_nothing_set_then_paper_auto_loopback() -> None:
    s = load_settings(NO_ENV)
    assert (s.bot_mode, s.control_mode, s.live_trading_armed, s.http_host, s.http_port) == (
        "paper",
        "auto",
        False,
        "127.0.0.1",
        8000,
    )
    assert s.symbols == ["ETHUSDTM"]
    assert not s.telegram_enabled
    assert not s.live_requested


def test_live_when_keys_missing_then_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOT_MODE", "live")
    monkeypatch.setenv("KUCOIN_API_KEY", "abc")
    with pytest.raises(ConfigError) as info:
        load_settings(NO_ENV)
    assert "BOT_MODE=live needs KUCOIN_API_SECRET, KUCOIN_API_PASSPHRASE" in str(info.value)


def test_live_requested_only_when_both_switches(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"BOT_MODE": "live", "KUCOIN_API_KEY": "k", "KUCOIN_API_SECRET": "s"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("KUCOIN_API_PASSPHRASE", "p")
    assert not load_settings(NO_ENV).live_requested
    monkeypatch.setenv("LIVE_TRADING_ARMED", "true")
    assert load_settings(NO_ENV).live_requested


def test_lists_when_comma_separated_then_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYMBOLS", "ethusdtm, XBTUSDTM")
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123:abc")
    monkeypatch.setenv("TELEGRAM_ALLOWED_USER_IDS", "111,222")
    monkeypatch.setenv("TELEGRAM_CHAT_IDS", "111")
    s = load_settings(NO_ENV)
    assert s.symbols == ["ETHUSDTM", "XBTUSDTM"]
    assert s.telegram_allowed_user_ids == [111, 222]
    assert s.telegram_enabled


def test_telegram_token_without_users_then_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123:abc")
    with pytest.raises(ConfigError, match="TELEGRAM_ALLOWED_USER_IDS is empty"):
        load_settings(NO_ENV)


def test_http_host_when_public_then_needs_explicit_allow(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_HOST", "0.0.0.0")
    with pytest.raises(ConfigError, match="HTTP_ALLOW_REMOTE"):
        load_settings(NO_ENV)
    monkeypatch.setenv("HTTP_ALLOW_REMOTE", "true")
    assert load_settings(NO_ENV).http_host == "0.0.0.0"


def test_bad_values_then_env_names_in_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOT_MODE", "yolo")
    monkeypatch.setenv("REPLAY_SPEED", "-3")
    with pytest.raises(ConfigError) as info:
        load_settings(NO_ENV)
    message = str(info.value)
    assert "BOT_MODE: Input should be 'paper', 'shadow' or 'live'" in message
    assert "REPLAY_SPEED: Value error, must be a positive number or 'max'" in message or "REPLAY_SPEED" in message


def test_redacted_when_secrets_set_then_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = {
        "KUCOIN_API_KEY": "key-AAAA1111",
        "KUCOIN_API_SECRET": "secret-BBBB2222",
        "KUCOIN_API_PASSPHRASE": "pass-CCCC3333",
        "TELEGRAM_BOT_TOKEN": "999:tok-DDDD4444",
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("TELEGRAM_ALLOWED_USER_IDS", "1")
    monkeypatch.setenv("TELEGRAM_CHAT_IDS", "1")
    s = load_settings(NO_ENV)
    shown = repr(s.redacted()) + repr(s) + str(s)
    for value in secrets.values():
        assert value not in shown
    assert sorted(s.secret_values()) == sorted(secrets.values())


def test_strategy_overrides_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRICT_ENTRY_MIN_SCORE", "85")
    monkeypatch.setenv("STRICT_MIN_CONFIDENCE", "0.95")
    gates = load_settings(NO_ENV).strategy().effective_gates()
    assert (gates.min_score, gates.min_confidence) == (85, 0.95)
    monkeypatch.setenv("STRICT_MODE", "false")
    assert load_settings(NO_ENV).strategy().effective_gates().min_score == 75


def test_env_example_documents_every_setting_and_loads() -> None:
    text = (ROOT / ".env.example").read_text()
    documented = {m.group(1).lower() for m in re.finditer(r"^#?([A-Z][A-Z0-9_]+)=", text, re.MULTILINE)}
    assert documented == set(Settings.model_fields)
    s = load_settings(ROOT / ".env.example")
    assert s.bot_mode == "paper"
    assert not s.telegram_enabled


@pytest.mark.parametrize(("name", "value", "default"), [("RUN_DIR", "/srv/enygma/run", "run")])
def test_run_dir_elsewhere_then_refused_rather_than_ignored(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, default: str
) -> None:
    """start.sh writes run/ under the project whatever this says: another value would be silently ignored while the
    trader looks for the PID file there. (LOG_DIR is honoured: tests/test_start_sh.py.)"""
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings(NO_ENV)
    assert str(info.value).startswith(f"settings: {name}: only {default} is supported"), str(info.value)
    assert value in str(info.value)
    monkeypatch.setenv(name, f"./{default}/")  # the default, however it is spelt
    assert getattr(load_settings(NO_ENV), name.lower()) == Path(default)


def test_env_example_values_are_the_code_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """A trader copies .env.example and believes its values are the defaults: every value shown (set or commented)
    equals what the bot uses without the line, or for the strategy overrides, what the strategy JSON says."""
    text = (ROOT / ".env.example").read_text()
    defaults = load_settings(NO_ENV)
    gates = defaults.strategy().effective_gates()
    from_json = {
        "strict_mode": gates.strict,
        "strict_entry_min_score": gates.min_score,
        "strict_min_confidence": gates.min_confidence,
        "strategy_config_path": ROOT / "docs" / "STRATEGY_CONFIG.json",
        "replay_dir": ROOT.parent / "shared" / "data" / "kucoin-futures",  # the default when present
        "paper_exchange_url": None,  # an example: the built-in simulator is the default
    }
    checked = 0
    for match in re.finditer(r"^#?([A-Z][A-Z0-9_]+)=(.+)$", text, re.MULTILINE):
        name, value = match.group(1).lower(), match.group(2)
        monkeypatch.setenv(name.upper(), value)
        shown = getattr(load_settings(NO_ENV), name)
        monkeypatch.delenv(name.upper())
        if name in from_json:
            expected = from_json[name]
            if name == "strategy_config_path":
                shown = ROOT / shown
            elif name == "replay_dir":
                shown = (ROOT / shown).resolve()
                expected = expected.resolve()
            elif expected is None:
                continue
        else:
            expected = getattr(defaults, name)
        assert shown == expected, f"{name.upper()}={value} in .env.example, but the default is {expected!r}"
        checked += 1
    assert checked >= 25


def test_notify_levels_with_a_misspelt_event_kind_then_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """.env.example's example silences stop_moved; 'stop_movd' used to be accepted and silence nothing."""
    monkeypatch.setenv("TELEGRAM_NOTIFY_LEVELS", '{"stop_movd": "silent"}')
    with pytest.raises(ConfigError) as info:
        load_settings(NO_ENV)
    assert str(info.value) == (
        "settings: TELEGRAM_NOTIFY_LEVELS: unknown event kind 'stop_movd'; did you mean stop_moved?"
    )
    monkeypatch.setenv("TELEGRAM_NOTIFY_LEVELS", '{"stop_moved": "silent", "signal_evaluated": "off"}')
    assert load_settings(NO_ENV).telegram_notify_levels == {"stop_moved": "silent", "signal_evaluated": "off"}
