"""The /chart picture: recent closes with entries, exits and the stop path, rendered off the event loop."""

from __future__ import annotations

import io
from datetime import UTC, datetime

from engine.events import Event, PositionClosed, PositionOpened, StopMoved
from engine.models import Candle


def render_chart(symbol: str, candles: list[Candle], events: list[Event]) -> bytes:
    """PNG bytes (matplotlib, Agg). Blocking: call it through ``asyncio.to_thread``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    def when(ts: int) -> float:
        return float(mdates.date2num(datetime.fromtimestamp(ts / 1000, tz=UTC)))  # type: ignore[no-untyped-call]

    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=100)
    if candles:
        ax.plot(
            [when(c.ts) for c in candles],
            [c.close for c in candles],
            color="#1f77b4",
            linewidth=1.1,
            label=f"{symbol} close",
        )
        start = candles[0].ts
        mine = [e for e in events if getattr(e, "symbol", None) == symbol and e.ts_ms >= start]
        opened = [e for e in mine if isinstance(e, PositionOpened)]
        closed = [e for e in mine if isinstance(e, PositionClosed)]
        moves = [e for e in mine if isinstance(e, StopMoved)]
        if opened:
            ax.scatter(
                [when(e.ts_ms) for e in opened],
                [float(e.entry) for e in opened],
                marker="^",
                color="#2ca02c",
                zorder=3,
                label="entry",
            )
            ax.scatter(
                [when(e.ts_ms) for e in opened],
                [float(e.stop) for e in opened],
                marker="_",
                color="#d62728",
                zorder=3,
                label="initial stop",
            )
        if moves:
            ax.step(
                [when(e.ts_ms) for e in moves],
                [float(e.new) for e in moves],
                where="post",
                color="#d62728",
                linewidth=0.9,
                label="stop path",
            )
        if closed:
            ax.scatter(
                [when(e.ts_ms) for e in closed],
                [float(e.exit) for e in closed],
                marker="x",
                color="#000000",
                zorder=3,
                label="exit",
            )
    ax.set_title(f"ENYGMA {symbol}")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d %H:%M"))  # type: ignore[no-untyped-call]
    fig.autofmt_xdate()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
