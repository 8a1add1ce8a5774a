"""Reuse the running-simulator and client fixtures of the exchange tests."""

from tests.exchange.conftest import client, sim

__all__ = ["client", "sim"]
