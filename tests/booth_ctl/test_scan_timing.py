"""The scan's pacing and its figures (timing goals themselves are measured in bench/)."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from booth_ctl.runtime._scanstats import ScanStats
from booth_ctl.runtime._ticker import SleepClock, Ticker
from tests._util import wait_for


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


async def test_a_clock_wait_ends_on_the_tick_after_its_deadline_not_on_a_timer_of_its_own() -> None:
    async with Ticker(0.2) as ticker:
        start = time.monotonic()
        woken = await ticker.until(start + 0.01)
        end = time.monotonic()
        # The tick that ended the wait was not taken by a scan: next() hands it over at once.
        tick = await ticker.next()
    assert woken is False
    assert end >= tick >= start + 0.01
    assert tick > start + 0.1  # the first tick of a 200 ms grid, not the wait's 10 ms


async def test_a_clock_wait_ends_on_its_event_and_a_past_deadline_does_not_wait() -> None:
    async with Ticker(100.0) as ticker:  # no tick comes during this test
        assert await asyncio.wait_for(ticker.until(time.monotonic() - 1.0), 1.0) is False
        ev = asyncio.Event()
        ev.set()
        assert await asyncio.wait_for(ticker.until(time.monotonic() + 50.0, wake=ev), 1.0)
    async with Ticker(0.01) as ticker:
        ev = asyncio.Event()
        waiting = asyncio.create_task(ticker.until(time.monotonic() + 50.0, wake=ev))
        await wait_for(lambda: bool(ticker._alarms), timeout_s=5.0, what="the wait registered")
        assert not waiting.done()
        ev.set()  # seen on the next tick
        assert await asyncio.wait_for(waiting, 5.0) is True


async def test_the_scan_runs_ahead_of_the_tasks_its_tick_wakes() -> None:
    """A poller woken by the same tick sends its request after the scan, not before it: the
    scan's start is not delayed by the work of the paced tasks."""
    order: list[str] = []
    async with Ticker(0.2) as ticker:

        async def paced() -> None:
            await ticker.until(time.monotonic() + 0.001)
            order.append("paced")

        async def scan() -> None:
            await ticker.next()
            order.append("scan")

        # The paced wait registered first, the scan's after it: the order is the ticker's.
        tasks = [asyncio.create_task(paced())]
        await wait_for(lambda: bool(ticker._alarms), timeout_s=5.0, what="the paced wait")
        tasks.append(asyncio.create_task(scan()))
        await asyncio.wait_for(asyncio.gather(*tasks), 5.0)
    assert order == ["scan", "paced"]


async def test_a_cancelled_clock_wait_leaves_nothing_behind() -> None:
    async with Ticker(100.0) as ticker:
        waiting = asyncio.create_task(ticker.until(time.monotonic() + 50.0))
        await wait_for(lambda: bool(ticker._alarms), timeout_s=5.0, what="the wait registered")
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert not ticker._alarms


async def test_the_sleep_clock_waits_out_its_deadline_or_ends_on_its_event() -> None:
    clock = SleepClock()
    start = time.monotonic()
    assert await clock.until(start + 0.02) is False
    assert time.monotonic() >= start + 0.02
    ev = asyncio.Event()
    waiting = asyncio.create_task(clock.until(time.monotonic() + 50.0, wake=ev))
    ev.set()
    assert await asyncio.wait_for(waiting, 5.0) is True


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
