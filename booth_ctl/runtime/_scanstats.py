"""Scan timing over a sliding window: lateness percentiles, worst case, overruns."""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass

#: The window that telemetry reports over.
WINDOW_S = 60.0
#: Upper bounds of the lateness histogram kept since start (Prometheus ``le``), seconds.
LATENESS_BUCKETS_S = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5)


@dataclass(frozen=True, slots=True)
class ScanFigures:
    period_ms: float
    late_p50_ms: float
    late_p99_ms: float
    late_max_ms: float
    duration_p99_ms: float
    overruns: int
    scans: int

    def as_telemetry(self) -> dict[str, float | int]:
        """The contract's ``scan`` object of a telemetry message."""
        return {
            "period_ms": self.period_ms,
            "late_p99_ms": round(self.late_p99_ms, 3),
            "late_max_ms": round(self.late_max_ms, 3),
            "overruns": self.overruns,
        }


class ScanStats:
    def __init__(self, period_s: float, window_s: float = WINDOW_S) -> None:
        self.period_s = period_s
        self.window_s = window_s
        #: Start, lateness and duration of each scan in the window, side by side: ``figures()``
        #: sorts the floats as they are (a few thousand, once a second for telemetry).
        self._starts: deque[float] = deque()
        self._late: deque[float] = deque()
        self._dur: deque[float] = deque()
        self._overruns: deque[float] = deque()
        self.total_scans = 0
        self.total_overruns = 0
        #: Scans per lateness bucket since start (not cumulative; the last one is beyond all).
        self.lateness_counts = [0] * (len(LATENESS_BUCKETS_S) + 1)
        self.lateness_sum_s = 0.0

    def record(self, start_s: float, lateness_s: float, duration_s: float) -> bool:
        """Add one scan; return True if it overran (finished after the next deadline)."""
        self.total_scans += 1
        self._starts.append(start_s)
        self._late.append(lateness_s)
        self._dur.append(duration_s)
        self.lateness_counts[bisect.bisect_left(LATENESS_BUCKETS_S, lateness_s)] += 1
        self.lateness_sum_s += lateness_s
        overrun = lateness_s + duration_s > self.period_s
        if overrun:
            self.total_overruns += 1
            self._overruns.append(start_s)
        self._trim(start_s)
        return overrun

    def record_skipped(self, now_s: float, count: int) -> None:
        """Ticks that passed without a scan are overruns too."""
        for _ in range(count):
            self.total_overruns += 1
            self._overruns.append(now_s)

    def _trim(self, now_s: float) -> None:
        horizon = now_s - self.window_s
        while self._starts and self._starts[0] < horizon:
            self._starts.popleft()
            self._late.popleft()
            self._dur.popleft()
        while self._overruns and self._overruns[0] < horizon:
            self._overruns.popleft()

    def figures(self) -> ScanFigures:
        late = sorted(self._late)
        dur = sorted(self._dur)

        def pct(values: list[float], q: float) -> float:
            if not values:
                return 0.0
            return values[min(len(values) - 1, int(q * len(values)))] * 1000.0

        return ScanFigures(
            period_ms=self.period_s * 1000.0,
            late_p50_ms=pct(late, 0.50),
            late_p99_ms=pct(late, 0.99),
            late_max_ms=(late[-1] * 1000.0) if late else 0.0,
            duration_p99_ms=pct(dur, 0.99),
            overruns=len(self._overruns),
            scans=len(late),
        )
