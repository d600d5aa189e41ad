"""The scan's pacing and its figures (timing goals themselves are measured in bench/)."""

from __future__ import annotations

import itertools
import time

import pytest

from booth_ctl.runtime._scanstats import ScanStats
from booth_ctl.runtime._ticker import Ticker


async def test_ticks_follow_the_period_grid() -> None:
    period = 0.005
    async with Ticker(period) as ticker:
        deadlines = [await ticker.next() for _ in range(20)]
    steps = [b - a for a, b in itertools.pairwise(deadlines)]
    # Deadlines are absolute grid points: every step is a whole number of periods, never less.
    for step in steps:
        assert step == pytest.approx(round(step / period) * period, abs=1e-9)
        assert step >= period - 1e-9


async def test_a_slow_consumer_skips_ticks_instead_of_bunching_them() -> None:
    period = 0.005
    async with Ticker(period) as ticker:
        first = await ticker.next()
        time.sleep(0.05)  # noqa: ASYNC251 -- block the loop ~10 periods, as an overrunning scan would
        late = await ticker.next()
        after = await ticker.next()
    assert ticker.skipped >= 5
    # After the stall the grid continues from "now", it does not replay the missed ticks.
    assert after - late == pytest.approx(period, abs=1e-9)
    assert late - first >= 0.04


def test_ticker_refuses_a_nonpositive_period() -> None:
    with pytest.raises(ValueError, match="period"):
        Ticker(0)


def test_scan_stats_percentiles_and_overruns() -> None:
    stats = ScanStats(period_s=0.010, window_s=60.0)
    for i in range(100):
        late = 0.0005 if i < 99 else 0.004
        assert not stats.record(start_s=i * 0.01, lateness_s=late, duration_s=0.001)
    assert stats.record(start_s=1.0, lateness_s=0.002, duration_s=0.009)  # ends after next tick
    fig = stats.figures()
    assert fig.overruns == 1
    assert fig.late_max_ms == pytest.approx(4.0)
    assert fig.late_p50_ms == pytest.approx(0.5)
    assert fig.as_telemetry()["overruns"] == 1


def test_scan_stats_forget_what_is_older_than_the_window() -> None:
    stats = ScanStats(period_s=0.010, window_s=1.0)
    stats.record(start_s=0.0, lateness_s=0.009, duration_s=0.005)
    stats.record(start_s=5.0, lateness_s=0.0001, duration_s=0.001)
    fig = stats.figures()
    assert fig.scans == 1
    assert fig.overruns == 0
    assert stats.total_overruns == 1
