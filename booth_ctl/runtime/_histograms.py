"""The histograms of the metrics endpoint: each device's poll time and the scan's lateness.

A device's poll is every request of one round (its block reads), so on a shared RS-485 line it
includes the wait for the line: the figure an engineer compares with the device's ``stale_s``.
"""

from __future__ import annotations

import bisect

from prometheus_client.core import HistogramMetricFamily

from booth_ctl.runtime._scanstats import LATENESS_BUCKETS_S, ScanStats

#: Upper bounds (seconds) of the per-device poll-time histogram: a Modbus TCP poll on a LAN takes
#: a millisecond or less, an RTU round at 9600 baud tens of milliseconds, a timeout its timeout_s.
POLL_BUCKETS_S = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)


class PollTimes:
    """Counts of poll durations per device since start (cumulative, as Prometheus wants)."""

    def __init__(self) -> None:
        self._counts: dict[str, list[int]] = {}
        self._sums_s: dict[str, float] = {}

    def record(self, device: str, took_s: float) -> None:
        counts = self._counts.setdefault(device, [0] * (len(POLL_BUCKETS_S) + 1))
        counts[bisect.bisect_left(POLL_BUCKETS_S, took_s)] += 1
        self._sums_s[device] = self._sums_s.get(device, 0.0) + took_s

    def count(self, device: str) -> int:
        return sum(self._counts.get(device, ()))

    def metric(self) -> HistogramMetricFamily:
        h = HistogramMetricFamily(
            "booth_device_poll_seconds",
            "Time of one poll of the device (all its requests), every poll since start",
            labels=["device"],
        )
        for device, counts in sorted(self._counts.items()):
            buckets: list[tuple[str, float]] = []
            total = 0
            for bound, n in zip(POLL_BUCKETS_S, counts, strict=False):
                total += n
                buckets.append((f"{bound:g}", float(total)))
            buckets.append(("+Inf", float(sum(counts))))
            h.add_metric([device], buckets, self._sums_s[device])
        return h


def lateness_histogram(stats: ScanStats) -> HistogramMetricFamily:
    """Every scan's start lateness since the supervisor started, as a counter histogram."""
    buckets: list[tuple[str, float]] = []
    total = 0
    for bound, count in zip(LATENESS_BUCKETS_S, stats.lateness_counts, strict=False):
        total += count
        buckets.append((f"{bound:g}", float(total)))
    buckets.append(("+Inf", float(stats.total_scans)))
    return HistogramMetricFamily(
        "booth_scan_lateness_seconds",
        "Scan start lateness (after its deadline), every scan since start",
        buckets=buckets,
        sum_value=stats.lateness_sum_s,
    )
