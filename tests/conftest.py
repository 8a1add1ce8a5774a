"""Shared fixtures: where the real KuCoin candles live, and whether tests may skip without them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA_DIR = ROOT.parent / "shared" / "data" / "kucoin-futures"
SHARED_SPEC_DIR = ROOT.parent / "shared" / "spec"


def shared_data_dir() -> Path:
    """The shared candle directory; skip (or fail under CI=true) when it is missing."""
    if SHARED_DATA_DIR.is_dir():
        return SHARED_DATA_DIR
    reason = f"shared candle data not found at {SHARED_DATA_DIR} (clone the project beside ../shared)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true requires the shared data: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """Directory of the real KuCoin futures candle files."""
    return shared_data_dir()
