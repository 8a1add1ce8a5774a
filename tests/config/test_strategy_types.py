"""docs/STRATEGY_CONFIG.json is typed: a number written as a string or a boolean, a NaN or Infinity, or a key given
twice is a mistake a trader makes while editing, and it must stop start-up with one line naming the key, not be
quietly coerced (``"80"`` → 80, ``true`` → 1) or quietly resolved (the second key wins)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.config import ConfigError, load_strategy_config
from engine.config.errors import EX_CONFIG
from engine.config.strategy import DEFAULT_STRATEGY_CONFIG_PATH
from tests.conftest import ROOT


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "strategy.json"
    path.write_text(text)
    return path


def _with(path: tuple[str, ...], literal: str) -> str:
    raw = json.loads(DEFAULT_STRATEGY_CONFIG_PATH.read_text())
    node = raw
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = "__HERE__"
    return json.dumps(raw, indent=2).replace('"__HERE__"', literal)


CASES = [
    (("gates", "minConfidence"), "true", "gates.minConfidence"),
    (("gates", "minConfidence"), '"0.9"', "gates.minConfidence"),
    (("indicators", "rsi", "params", "period"), '"21"', "indicators.rsi.params.period"),
    (("indicators", "kdj", "weight"), "false", "indicators.kdj.weight"),
    (("indicators", "kdj", "params", "jOversold"), "NaN", "NaN"),
    (("indicators", "kdj", "params", "jOverbought"), "Infinity", "Infinity"),
    (("riskManagement", "positionSizePercent"), '"2"', "riskManagement.positionSizePercent"),
]


@pytest.mark.parametrize(("path", "literal", "named"), CASES, ids=[f"{'.'.join(p)}={v}" for p, v, _ in CASES])
def test_wrong_type_or_non_number_then_one_line_naming_key(
    tmp_path: Path, path: tuple[str, ...], literal: str, named: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_strategy_config(_write(tmp_path, _with(path, literal)))
    assert named in str(info.value) and "\n" not in str(info.value)


def test_key_given_twice_then_refused(tmp_path: Path) -> None:
    text = DEFAULT_STRATEGY_CONFIG_PATH.read_text().replace('"gates": {', '"gates": {\n    "minScore": 20,', 1)
    with pytest.raises(ConfigError, match=r"minScore.*twice|twice.*minScore"):
        load_strategy_config(_write(tmp_path, text))


def test_check_config_and_runtime_when_string_number_then_exit_78_one_line(tmp_path: Path) -> None:
    path = _write(tmp_path, _with(("gates", "minConfidence"), '"0.5"'))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BOT_", "KUCOIN_", "TELEGRAM_", "LIVE_"))}
    env.update(STRATEGY_CONFIG_PATH=str(path), DB_PATH=str(tmp_path / "e.sqlite"))
    for module in ("engine.config", "engine.runtime"):
        proc = subprocess.run(
            [sys.executable, "-m", module], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert proc.returncode == EX_CONFIG, proc.stdout + proc.stderr
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "gates.minConfidence" in lines[0], proc.stderr
    assert not (tmp_path / "e.sqlite").exists()
