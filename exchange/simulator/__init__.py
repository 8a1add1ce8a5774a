"""A KuCoin-Futures-compatible exchange on loopback, for paper trading and integration tests."""

from exchange.simulator.server import SimulatorConfig, SimulatorServer

__all__ = ["SimulatorConfig", "SimulatorServer"]
