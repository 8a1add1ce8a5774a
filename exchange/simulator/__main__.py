"""``python -m exchange.simulator``: run the simulator standalone, optionally replaying candle files."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from decimal import Decimal
from pathlib import Path

from exchange.simulator.server import SimulatorConfig, SimulatorServer


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m exchange.simulator", description="KuCoin-compatible simulator")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8900)
    p.add_argument("--data-dir", type=Path, help="candle files to replay (and contracts.json)")
    p.add_argument("--symbols", default="ETHUSDTM", help="comma-separated symbols")
    p.add_argument("--speed", default="60", help="replay speed: N × real time, or max")
    p.add_argument("--api-key", required=True)
    p.add_argument("--api-secret", required=True)
    p.add_argument("--api-passphrase", required=True)
    p.add_argument("--balance", default="10000")
    p.add_argument("--state", type=Path, help="load state from this file at start and save it at exit")
    return p.parse_args(argv)


async def run(args: argparse.Namespace) -> None:
    symbols = tuple(s.strip().upper() for s in args.symbols.split(",") if s.strip())
    contracts = args.data_dir / "contracts.json" if args.data_dir else None
    sim = SimulatorServer(
        SimulatorConfig(
            api_key=args.api_key,
            api_secret=args.api_secret,
            api_passphrase=args.api_passphrase,
            contracts_file=contracts,
            symbols=symbols,
            initial_balance=Decimal(args.balance),
        )
    )
    if args.state is not None and args.state.exists():
        sim.load_state(args.state)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await sim.start(args.host, args.port)
    print(f"simulator listening on {sim.rest_url} for {', '.join(symbols)}", flush=True)
    replay: asyncio.Task[None] | None = None
    if args.data_dir is not None:
        from exchange.simulator.replay import replay_files

        replay = asyncio.create_task(replay_files(sim, args.data_dir, symbols, args.speed), name="sim-replay")
    await stop.wait()
    if replay is not None:
        replay.cancel()
    if args.state is not None:
        sim.save_state(args.state)
    await sim.stop()


def main(argv: list[str] | None = None) -> int:
    asyncio.run(run(parse(sys.argv[1:] if argv is None else argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
