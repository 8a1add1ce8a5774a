"""``python -m exchange.simulator``: run the simulator standalone, optionally replaying candle files.

Its key, secret and passphrase come from the environment (``SIM_API_KEY``, ``SIM_API_SECRET``,
``SIM_API_PASSPHRASE``), else the bot's ``KUCOIN_API_*`` from the environment or the project's ``.env``, so a paper
bot on ``PAPER_EXCHANGE_URL`` signs with what the simulator expects. The ``--api-*`` flags still work but put the
values in ``ps`` and the shell's history: each one used is warned about."""

from __future__ import annotations

import argparse
import asyncio
import os
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
    for name, _ in CREDENTIALS:
        p.add_argument(f"--api-{name}", help=argparse.SUPPRESS)  # deprecated: visible in ps and shell history
    p.add_argument("--balance", default="10000")
    p.add_argument("--state", type=Path, help="load state from this file at start and save it at exit")
    args = p.parse_args(argv)
    missing = []
    for name, env in CREDENTIALS:
        attr = f"api_{name}"
        if getattr(args, attr) is not None:
            print(
                f"warning: --api-{name} on the command line is visible in ps and the shell's history; "
                f"set SIM_API_{env} in the environment (or KUCOIN_API_{env} in .env) instead",
                file=sys.stderr,
                flush=True,
            )
            continue
        value = credential(env)
        if value is None:
            missing.append(f"SIM_API_{env}")
        setattr(args, attr, value)
    if missing:
        p.error(f"set {', '.join(missing)} in the environment (or KUCOIN_API_* in the environment or .env)")
    return args


CREDENTIALS = (("key", "KEY"), ("secret", "SECRET"), ("passphrase", "PASSPHRASE"))
ENV_FILE = Path(__file__).resolve().parents[2] / ".env"  # the project's, where the bot reads its KUCOIN_API_*


def credential(name: str) -> str | None:
    """``SIM_API_<name>``, else ``KUCOIN_API_<name>`` from the environment, else from the project's ``.env``;
    None when none of them holds a value."""
    for var in (f"SIM_API_{name}", f"KUCOIN_API_{name}"):
        if value := os.environ.get(var, "").strip():
            return value
    if ENV_FILE.is_file():
        from dotenv import dotenv_values

        values = {k.upper(): v for k, v in dotenv_values(ENV_FILE, encoding="utf-8").items()}
        if value := (values.get(f"KUCOIN_API_{name}") or "").strip():
            return value
    return None


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
