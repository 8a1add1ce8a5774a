"""Configuration: the strategy JSON (what to trade and how) and runtime settings (where, with which keys)."""

from engine.config.errors import ConfigError
from engine.config.strategy import (
    GateThresholds,
    StrategyConfig,
    default_strategy_config,
    load_strategy_config,
)

__all__ = ["ConfigError", "GateThresholds", "StrategyConfig", "default_strategy_config", "load_strategy_config"]
