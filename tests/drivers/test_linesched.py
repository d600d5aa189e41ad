"""One scheduler per line: safe writes first, then safety reads, then the rest; silence kept."""

from __future__ import annotations

import asyncio
import time

import pytest

from drivers._linesched import (
    LineScheduler,
    Priority,
    read_priority,
    silence_s,
    write_priority,
)
from tests._util import wait_for

pytestmark = pytest.mark.timeout(10)
#: Conditions checked every millisecond: the waits below fall inside one 50 ms block read.
FAST = {"interval_s": 0.001}

#: A long block read on the wire (125 registers at 9600 baud is about 0.27 s; shortened here).
BLOCK_S = 0.05


async def test_a_safety_read_waits_for_one_exchange_not_for_the_queue() -> None:
    """Ten long block reads queued before a PV read: the PV read goes right after the one block
    already on the wire, and a safe write queued last goes before everything."""
    line = LineScheduler("rtu:test")
    order: list[str] = []

    async def exchange(name: str, priority: Priority, hold_s: float) -> float:
        queued = time.monotonic()
        async with line.turn(priority):
            order.append(name)
            await asyncio.sleep(hold_s)  # the exchange's time on the wire, holding the line
        return time.monotonic() - queued

    first = asyncio.create_task(exchange("block0", Priority.READ, BLOCK_S))
    await wait_for(lambda: order == ["block0"], timeout_s=1.0, what="block0 on the line", **FAST)
    blocks = [
        asyncio.create_task(exchange(f"block{i}", Priority.READ, BLOCK_S)) for i in range(1, 11)
    ]
    await wait_for(lambda: line.waiting == 10, timeout_s=1.0, what="ten blocks queued", **FAST)
    pv = asyncio.create_task(exchange("pv", Priority.SAFETY_READ, 0.001))
    await wait_for(lambda: line.waiting == 11, timeout_s=1.0, what="the PV read queued", **FAST)
    off = asyncio.create_task(exchange("heater_off", Priority.SAFE_WRITE, 0.001))
    pv_wait_s = await pv
    await asyncio.gather(first, off, *blocks)
    assert order[:3] == ["block0", "heater_off", "pv"]
    assert order[3:] == [f"block{i}" for i in range(1, 11)]  # first come first served
    # Bounded by the one block on the wire, not by the ten behind it.
    assert pv_wait_s < 3 * BLOCK_S
    assert line.served[Priority.READ] == 11 and line.served[Priority.SAFETY_READ] == 1


async def test_a_cancelled_waiter_does_not_hold_the_line() -> None:
    line = LineScheduler("rtu:test")
    release, held = asyncio.Event(), asyncio.Event()

    async def holder() -> None:
        async with line.turn(Priority.READ):
            held.set()
            await release.wait()

    async def waiter(priority: Priority) -> None:
        async with line.turn(priority):
            pass

    h = asyncio.create_task(holder())
    await asyncio.wait_for(held.wait(), timeout=1.0)
    gone = asyncio.create_task(waiter(Priority.SAFETY_READ))
    later = asyncio.create_task(waiter(Priority.READ))
    await wait_for(lambda: line.waiting == 2, timeout_s=1.0, what="two waiters queued")
    gone.cancel()
    release.set()
    await asyncio.wait_for(asyncio.gather(h, later), timeout=1.0)
    assert gone.cancelled()
    # The line is free again.
    await asyncio.wait_for(waiter(Priority.READ), timeout=1.0)


async def test_the_silence_is_kept_between_exchanges() -> None:
    quiet_s = silence_s(9600)
    line = LineScheduler("rtu:test", quiet_s)
    ends: list[float] = []
    starts: list[float] = []
    for _ in range(3):
        async with line.turn(Priority.READ):
            starts.append(time.monotonic())
        ends.append(time.monotonic())
    for end, start in zip(ends, starts[1:], strict=False):
        assert start - end >= quiet_s - 1e-4


def test_silence_times() -> None:
    assert silence_s(9600) == pytest.approx(3.5 * 10 / 9600)
    assert silence_s(9600, "E") == pytest.approx(3.5 * 11 / 9600)
    assert silence_s(38400) == pytest.approx(0.00175)


def test_priorities_by_kind_and_point() -> None:
    assert read_priority("temp_controller", "input", ("pv_c", "output_pct")) is Priority.SAFETY_READ
    assert read_priority("temp_controller", "holding", ("sv_c", "run")) is Priority.READ
    assert read_priority("remote_io", "discrete", ("door_closed",)) is Priority.SAFETY_READ
    assert read_priority("remote_io", "coil", ("n2_purge",)) is Priority.READ
    assert read_priority("holder_drive", "input", ("z_mm",)) is Priority.SAFETY_READ
    assert write_priority("temp_controller", "run", 0, None) is Priority.SAFE_WRITE
    assert write_priority("temp_controller", "run", 1, None) is Priority.WRITE
    assert write_priority("remote_io", "heater_contactor", False, None) is Priority.SAFE_WRITE
    assert write_priority("remote_io", "vacuum_pump", False, None) is Priority.WRITE
    # The holder going up (a smaller lowering distance) ends a hazard; going down does not.
    assert write_priority("holder_drive", "z_target_mm", 0.0, 80.0) is Priority.SAFE_WRITE
    assert write_priority("holder_drive", "z_target_mm", 90.0, 80.0) is Priority.WRITE
    assert write_priority("holder_drive", "z_target_mm", 0.0, None) is Priority.WRITE


async def test_the_silence_is_kept_when_the_loop_wakes_early(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """uvloop's timers have millisecond resolution and may fire early: a sleep of 1.8 ms can
    return after 0.8 ms. The scheduler checks the clock, not the sleep."""
    real_sleep = asyncio.sleep

    async def early(delay: float) -> None:
        await real_sleep(max(0.0, delay - 0.001))

    monkeypatch.setattr("drivers._linesched.asyncio.sleep", early)
    quiet_s = silence_s(19200)
    line = LineScheduler("rtu:test", quiet_s)
    ends: list[float] = []
    starts: list[float] = []
    for _ in range(5):
        async with line.turn(Priority.READ):
            starts.append(time.monotonic())
            ends.append(time.monotonic())  # the exchange ends no earlier than this
    for end, start in zip(ends, starts[1:], strict=False):
        assert start - end >= quiet_s
