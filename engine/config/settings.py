"""Runtime settings from the environment and ``.env``: mode, keys, Telegram, paths, strategy overrides.

Secrets are ``SecretStr`` so they never print; every field is documented in ``.env.example``.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

from engine.config.errors import ConfigError, describe_validation_error
from engine.config.strategy import ROOT, StrategyConfig, load_strategy_config

BotMode = Literal["paper", "shadow", "live"]
ControlMode = Literal["auto", "manual"]
NotifyLevel = Literal["on", "silent", "off"]
SYMBOL_RE = re.compile(r"^[A-Z0-9]+USDTM$")
SECRET_FIELDS = ("kucoin_api_key", "kucoin_api_secret", "kucoin_api_passphrase", "telegram_bot_token", "webhook_url")


def _split_csv(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """Everything that differs between one trader's machine and another's."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True, case_sensitive=False
    )

    # Mode and arming
    bot_mode: BotMode = "paper"
    live_trading_armed: bool = False
    control_mode: ControlMode = "auto"

    # Strategy
    strategy_config_path: Path | None = None
    strict_mode: bool | None = None
    strict_entry_min_score: float | None = Field(default=None, ge=20, le=150)
    strict_min_confidence: float | None = Field(default=None, ge=0, le=1)
    symbols: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["ETHUSDTM"], min_length=1)

    # KuCoin
    kucoin_api_key: SecretStr | None = None
    kucoin_api_secret: SecretStr | None = None
    kucoin_api_passphrase: SecretStr | None = None
    kucoin_key_version: int = Field(default=2, ge=2, le=3)
    kucoin_rest_url: str = "https://api-futures.kucoin.com"
    kucoin_spot_rest_url: str = "https://api.kucoin.com"  # only for the key-permission check at start
    position_mode: Literal["one_way", "hedge"] = "one_way"
    max_entry_slippage_pct: float = Field(default=0.3, gt=0, le=5)

    # Telegram
    telegram_bot_token: SecretStr | None = None
    telegram_allowed_user_ids: Annotated[list[int], NoDecode] = Field(default_factory=list)
    telegram_chat_ids: Annotated[list[int], NoDecode] = Field(default_factory=list)
    telegram_approval_ttl_s: int = Field(default=300, ge=10, le=86_400)
    telegram_arm_ttl_s: int = Field(default=60, ge=10, le=3_600)
    telegram_daily_summary_utc: str = Field(default="00:05", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    telegram_notify_levels: dict[str, NotifyLevel] = Field(default_factory=dict)
    webhook_url: SecretStr | None = None  # such URLs carry their token in the path
    telegram_api_base_url: str | None = None

    # Approvals and safety
    approval_max_price_drift_pct: float = Field(default=0.3, gt=0, le=10)
    kill_switch_file: Path = Path("run/KILL")
    reconcile_interval_s: int = Field(default=30, ge=5, le=3_600)

    # Paths and HTTP
    db_path: Path = Path("data/enygma.sqlite")
    log_dir: Path = Path("logs")  # where ./start.sh (in the background) writes enygma-<start time>.log
    keep_run_logs: int = Field(default=20, ge=1, le=10_000)  # start.sh keeps this many enygma-*.log in log_dir
    run_dir: Path = Path("run")
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8000, ge=0, le=65_535)
    http_allow_remote: bool = False

    # Paper mode: the in-process simulator and its replay
    replay_dir: Path | None = None
    replay_speed: str = "60"
    paper_exchange_url: str | None = None
    paper_initial_balance: float = Field(default=10_000, gt=0)

    @field_validator("symbols", mode="before")
    @classmethod
    def _symbols_csv(cls, value: Any) -> Any:
        return [s.upper() for s in _split_csv(value)] if isinstance(value, str) else value

    @field_validator("symbols")
    @classmethod
    def _symbols_valid(cls, value: list[str]) -> list[str]:
        bad = [s for s in value if not SYMBOL_RE.match(s)]
        if bad:
            raise ValueError(f"{', '.join(map(repr, bad))} is not a KuCoin USDT-M perpetual name like ETHUSDTM")
        dupes = sorted({s for s in value if value.count(s) > 1})
        if dupes:
            raise ValueError(f"duplicate symbol {', '.join(dupes)}")
        return value

    @field_validator("kucoin_api_key", "kucoin_api_secret", "kucoin_api_passphrase", "telegram_bot_token")
    @classmethod
    def _secret_not_blank(cls, value: SecretStr | None) -> SecretStr | None:
        # Empty means "not set" (.env.example ships them empty); spaces are a copy-paste slip that would only
        # surface later as a signature or login failure. The value itself is never echoed.
        if value is not None and value.get_secret_value() != value.get_secret_value().strip():
            raise ValueError("has spaces before or after the value (or is only spaces); remove them")
        return value

    @field_validator("kucoin_rest_url", "kucoin_spot_rest_url", "telegram_api_base_url")
    @classmethod
    def _https_unless_local(cls, value: str | None) -> str | None:
        # Signed KuCoin requests carry the key and the signed passphrase, Telegram URLs the bot token: plain http is
        # only for a simulator or a test server on this machine.
        if value is None:
            return None
        parts = urlsplit(value.strip())
        if parts.scheme == "https" and parts.hostname:
            return value.strip()
        if parts.scheme == "http" and parts.hostname and _is_loopback(parts.hostname):
            return value.strip()
        raise ValueError("must be an https:// URL (plain http only to this machine, e.g. a local simulator)")

    @field_validator("webhook_url")
    @classmethod
    def _webhook_http(cls, value: SecretStr | None) -> SecretStr | None:
        url = "" if value is None else value.get_secret_value().strip()
        if url and not url.lower().startswith(("https://", "http://")):
            raise ValueError("must start with https:// (or http://)")
        return SecretStr(url) if url else None

    @field_validator("telegram_allowed_user_ids", "telegram_chat_ids", mode="before")
    @classmethod
    def _ids_csv(cls, value: Any) -> Any:
        return _split_csv(value)

    @field_validator("telegram_notify_levels")
    @classmethod
    def _known_event_kinds(cls, value: dict[str, NotifyLevel]) -> dict[str, NotifyLevel]:
        # A misspelt kind ("stop_movd") would leave that event at its default while the trader believes it silenced.
        import difflib

        from engine.events import EVENT_TYPES

        for kind in value:
            if kind not in EVENT_TYPES:
                close = difflib.get_close_matches(kind, list(EVENT_TYPES), n=1)
                hint = f"did you mean {close[0]}?" if close else f"the kinds are {', '.join(sorted(EVENT_TYPES))}"
                raise ValueError(f"unknown event kind {kind!r}; {hint}")
        return value

    @field_validator("run_dir")
    @classmethod
    def _fixed_run_dir(cls, value: Path) -> Path:
        # start.sh keeps the PID file and the live confirmation in run/ under the project: another value would be
        # ignored while the trader looks for the PID file there. (LOG_DIR is honoured by start.sh.)
        if value != Path("run"):
            raise ValueError(
                "only run is supported (./start.sh keeps the PID file and the live confirmation in run/ under the "
                "project; the file kill switch is KILL_SWITCH_FILE): remove the line"
            )
        return value

    @field_validator("replay_speed")
    @classmethod
    def _speed(cls, value: str) -> str:
        return check_replay_speed(value)

    @model_validator(mode="after")
    def _keys_for_exchange_modes(self) -> Self:
        if self.bot_mode in ("shadow", "live"):
            missing = [
                name
                for name in ("kucoin_api_key", "kucoin_api_secret", "kucoin_api_passphrase")
                if getattr(self, name) is None or not getattr(self, name).get_secret_value()
            ]
            if missing:
                raise ValueError(f"BOT_MODE={self.bot_mode} needs {', '.join(m.upper() for m in missing)}")
        return self

    @model_validator(mode="after")
    def _telegram_needs_users(self) -> Self:
        if self.telegram_bot_token is not None and self.telegram_bot_token.get_secret_value():
            if not self.telegram_allowed_user_ids:
                raise ValueError("TELEGRAM_BOT_TOKEN is set but TELEGRAM_ALLOWED_USER_IDS is empty")
            if not self.telegram_chat_ids:
                raise ValueError("TELEGRAM_BOT_TOKEN is set but TELEGRAM_CHAT_IDS is empty")
        return self

    @model_validator(mode="after")
    def _loopback_unless_allowed(self) -> Self:
        if not self.http_allow_remote and not _is_loopback(self.http_host):
            raise ValueError(f"HTTP_HOST={self.http_host} is not loopback; set HTTP_ALLOW_REMOTE=true to expose it")
        return self

    @property
    def telegram_enabled(self) -> bool:
        return self.telegram_bot_token is not None and bool(self.telegram_bot_token.get_secret_value())

    @property
    def live_requested(self) -> bool:
        """Live trading may be armed only when both switches are on; arming itself is a separate, explicit step."""
        return self.bot_mode == "live" and self.live_trading_armed

    def secret_values(self) -> list[str]:
        """Every secret in force, for redaction filters."""
        found = []
        for value in (
            self.kucoin_api_key,
            self.kucoin_api_secret,
            self.kucoin_api_passphrase,
            self.telegram_bot_token,
            self.webhook_url,
        ):
            if value is not None and value.get_secret_value():
                found.append(value.get_secret_value())
        urls = (self.kucoin_rest_url, self.kucoin_spot_rest_url, self.telegram_api_base_url, self.paper_exchange_url)
        for url in urls:
            try:
                password = urlsplit(url or "").password  # a proxy's password, wherever it shows
            except ValueError:  # PAPER_EXCHANGE_URL is not validated: an unparsable one has no password to find
                password = None
            found += [password] if password else []
        if self.webhook_url is not None:
            # Its path is the credential, and a client names the URL its own way (host in lower case, another
            # scheme after a redirect): the path and query are blanked wherever they appear, not only the whole URL.
            parts = urlsplit(self.webhook_url.get_secret_value())
            found += [part for part in (parts.path.rstrip("/"), parts.query) if len(part) >= 8]  # not a bare /hook
        return found

    def redacted(self) -> dict[str, Any]:
        """The effective settings with every secret replaced, safe for chat, logs and the dashboard."""
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                out[name] = "***" if value.get_secret_value() else ""
            elif isinstance(value, Path):
                out[name] = str(value)
            elif isinstance(value, str) and name.endswith("_url") and value:
                out[name] = shown_url(value, keep_path=True)
            else:
                out[name] = value
        return out

    def strategy(self) -> StrategyConfig:
        """The strategy config in force: the JSON file plus the environment's strict-mode overrides."""
        cfg = load_strategy_config(self.strategy_config_path)
        if self.strict_mode is not None:
            cfg = cfg.with_strict(self.strict_mode)
        if self.strict_entry_min_score is not None or self.strict_min_confidence is not None:
            cfg = cfg.with_strict_overrides(
                min_score=self.strict_entry_min_score, min_confidence=self.strict_min_confidence
            )
        return cfg


def shown_url(url: str, *, keep_path: bool) -> str:
    """A URL safe to show: never a user or password; without its path when the path is the secret."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "***"
    if not parts.scheme or not host:
        return "***"
    return f"{parts.scheme}://{host}{port}" + (parts.path if keep_path else "/***")


def check_replay_speed(value: str) -> str:
    """A replay speed: a positive, finite number (times real time) or ``max``; ValueError otherwise."""
    if value != "max":
        try:
            speed = float(value)
        except ValueError:
            speed = float("nan")
        if not (0 < speed < float("inf")):
            raise ValueError("must be a positive number or 'max'")
    return value


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_settings(env_file: Path | None = None, **overrides: Any) -> Settings:
    """Settings from the environment and ``env_file`` (default ``.env`` in the project root); one-line errors."""
    target = env_file if env_file is not None else ROOT / ".env"
    from engine.security import check_env_file

    check_env_file(target)
    _refuse_unknown_names(target)
    try:
        return Settings(_env_file=target if target.exists() else None, **overrides)
    except ValidationError as exc:
        raise ConfigError(f"settings: {_env_names(describe_validation_error(exc))}") from None
    except SettingsError as exc:
        # A list or mapping setting that is not valid JSON (e.g. TELEGRAM_NOTIFY_LEVELS); pydantic-settings raises
        # this outside validation, with the JSON decoder's traceback chained to it.
        found = re.search(r'field "(\w+)"', str(exc))
        name = found.group(1).upper() if found else "a setting"
        raise ConfigError(f"settings: {name}: not valid JSON") from None
    except (OSError, UnicodeDecodeError) as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"cannot read {target}: {detail}") from None


def _refuse_unknown_names(env_file: Path) -> None:
    """A misspelt name in .env (LIVE_TRADNG_ARMED, TELEGRAM_ALOWED_USER_IDS) would be ignored while the trader
    believes it is in force: refuse it. (The process environment holds many unrelated names; only .env is checked.)"""
    if not env_file.is_file():
        return
    import difflib
    import warnings

    from dotenv import dotenv_values

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        names = [n.strip() for n in dotenv_values(env_file, encoding="utf-8")]
    known = [n.upper() for n in Settings.model_fields]
    for name in names:
        if name.upper() not in known:
            close = difflib.get_close_matches(name.upper(), known, n=1)
            hint = f"; did you mean {close[0]}?" if close else "; every setting is listed in .env.example"
            raise ConfigError(f"{env_file}: unknown setting {name}{hint}")


def _env_names(message: str) -> str:
    """Show environment-variable names (BOT_MODE) rather than pydantic's camelCase paths (botMode)."""
    from pydantic.alias_generators import to_snake

    parts = []
    for part in message.split("; "):
        key, sep, rest = part.partition(": ")
        if sep and key and " " not in key:
            parts.append(f"{to_snake(key).upper()}: {rest}")
        else:
            parts.append(part)
    return "; ".join(parts)
