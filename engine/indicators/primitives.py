"""O(1) building blocks: sliding sums, SMA, EMA, Wilder smoothing, sliding min/max."""

from __future__ import annotations

from collections import deque


class SlidingSum:
    """Sum of the last ``n`` values; values are offset by the first one seen so that sums of squares keep
    their precision when prices are large and the spread is small."""

    __slots__ = ("_anchor", "_buf", "_n", "_sum", "_sumsq")

    def __init__(self, n: int) -> None:
        self._n = n
        self._buf: deque[float] = deque()
        self._sum = 0.0
        self._sumsq = 0.0
        self._anchor: float | None = None

    def push(self, x: float) -> bool:
        """Add ``x``; True once the window is full."""
        if self._anchor is None:
            self._anchor = x
        d = x - self._anchor
        buf = self._buf
        buf.append(d)
        self._sum += d
        self._sumsq += d * d
        if len(buf) > self._n:
            old = buf.popleft()
            self._sum -= old
            self._sumsq -= old * old
        return len(buf) == self._n

    @property
    def full(self) -> bool:
        return len(self._buf) == self._n

    def mean(self) -> float:
        if self._anchor is None:
            raise ValueError("mean of an empty window")
        return self._anchor + self._sum / len(self._buf)

    def pvariance(self) -> float:
        """Population variance of the window."""
        n = len(self._buf)
        m = self._sum / n
        return max(0.0, self._sumsq / n - m * m)


class Sma:
    """Simple moving average over a ring buffer; ``None`` until ``n`` values were seen."""

    __slots__ = ("_buf", "_count", "_i", "_n", "_sum")

    def __init__(self, n: int) -> None:
        self._n = n
        self._buf = [0.0] * n
        self._i = 0
        self._count = 0
        self._sum = 0.0

    def update(self, x: float) -> float | None:
        i = self._i
        if self._count < self._n:
            self._count += 1
            self._sum += x
        else:
            self._sum += x - self._buf[i]
        self._buf[i] = x
        i += 1
        self._i = 0 if i == self._n else i
        return self._sum / self._n if self._count == self._n else None


class Ema:
    """EMA with α = 2/(n+1), seeded with the SMA of its first ``n`` inputs (spec §3, TA-Lib's default)."""

    __slots__ = ("_alpha", "_count", "_n", "_seed", "value")

    def __init__(self, n: int) -> None:
        self._n = n
        self._alpha = 2.0 / (n + 1)
        self._count = 0
        self._seed = 0.0
        self.value: float | None = None

    def update(self, x: float) -> float | None:
        if self.value is not None:
            self.value += self._alpha * (x - self.value)
            return self.value
        self._count += 1
        self._seed += x
        if self._count == self._n:
            self.value = self._seed / self._n
        return self.value


class WilderMean:
    """Wilder smoothing seeded with the mean of the first ``n`` inputs: m = (m·(n−1) + x)/n."""

    __slots__ = ("_count", "_n", "_seed", "value")

    def __init__(self, n: int) -> None:
        self._n = n
        self._count = 0
        self._seed = 0.0
        self.value: float | None = None

    def update(self, x: float) -> float | None:
        if self.value is not None:
            self.value = (self.value * (self._n - 1) + x) / self._n
            return self.value
        self._count += 1
        self._seed += x
        if self._count == self._n:
            self.value = self._seed / self._n
        return self.value


class WilderSum:
    """Wilder running sum seeded with the sum of the first ``n`` inputs: S = S − S/n + x (ADX §3.12)."""

    __slots__ = ("_count", "_n", "value")

    def __init__(self, n: int) -> None:
        self._n = n
        self._count = 0
        self.value = 0.0

    def update(self, x: float) -> float | None:
        if self._count >= self._n:
            self.value = self.value - self.value / self._n + x
            return self.value
        self._count += 1
        self.value += x
        return self.value if self._count == self._n else None


class SlidingExtremes:
    """Highest and lowest of the last ``n`` values with monotonic deques (amortised O(1))."""

    __slots__ = ("_i", "_max", "_min", "_n")

    def __init__(self, n: int) -> None:
        self._n = n
        self._i = 0
        self._max: deque[tuple[int, float]] = deque()
        self._min: deque[tuple[int, float]] = deque()

    def push(self, hi: float, lo: float) -> bool:
        """Add a bar's high and low; True once the window is full."""
        i = self._i
        self._i += 1
        mx, mn = self._max, self._min
        while mx and mx[-1][1] <= hi:
            mx.pop()
        mx.append((i, hi))
        while mn and mn[-1][1] >= lo:
            mn.pop()
        mn.append((i, lo))
        cutoff = i - self._n
        if mx[0][0] <= cutoff:
            mx.popleft()
        if mn[0][0] <= cutoff:
            mn.popleft()
        return self._i >= self._n

    @property
    def high(self) -> float:
        return self._max[0][1]

    @property
    def low(self) -> float:
        return self._min[0][1]

    def __len__(self) -> int:
        return len(self._max) + len(self._min)
