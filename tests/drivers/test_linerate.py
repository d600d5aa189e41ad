"""The rates a line can carry, decided from its measured exchanges (virtual clock, pure logic)."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest

from drivers import DeviceSet, ModbusDevice, Quality
from drivers._config import POLLS_PER_STALE
from drivers._linerate import BUSY_HIGH, DIVIDER_MAX, LineRate
from drivers._linesched import Priority, read_priority
from sim_hw import SimBooth
from tests._util import render_config, wait_for

from ._fakes import load_devices

#: A heater's PV block must be read twice within its 0.5 s stale limit: 4 Hz.
NEED_HZ = POLLS_PER_STALE / 0.5


def drive(
    rate: LineRate,
    t0_s: float,
    seconds: float,
    *,
    exchange_s: float,
    pv_every_s: float,
    other_per_pv: int,
) -> float:
    """A line whose PV reads come every ``pv_every_s`` (each followed by ``other_per_pv``
    non-safety reads of ``exchange_s`` each, divided by the line's divider) and nothing else."""
    t = t0_s
    n = 0
    while t < t0_s + seconds:
        t += exchange_s
        rate.exchanged(t, exchange_s, safety=True)
        rate.safety_read(t, "heater1", 0, "input", NEED_HZ)
        if n % rate.divider == 0:
            for _ in range(other_per_pv):
                t += exchange_s
                rate.exchanged(t, exchange_s, safety=False)
        n += 1
        t = max(t, t0_s + n * pv_every_s)
    return t


def test_a_line_with_room_keeps_every_rate() -> None:
    rate = LineRate("rtu:/dev/x")
    drive(rate, 0.0, 10.0, exchange_s=0.01, pv_every_s=0.1, other_per_pv=2)
    assert rate.divider == 1
    assert rate.overload is None
    assert rate.busy == pytest.approx(0.3, abs=0.05)


def test_a_busy_line_lowers_the_other_reads_and_raises_them_again_when_it_has_room() -> None:
    rate = LineRate("rtu:/dev/x")
    # Each PV read brings 8 other reads of 12 ms: 108 ms of exchanges per 100 ms, saturated.
    t = drive(rate, 0.0, 5.0, exchange_s=0.012, pv_every_s=0.1, other_per_pv=8)
    assert rate.divider > 1, "the non-safety reads must go slower"
    assert rate.overload is None, "the PV reads keep their rate: no overload"
    # Then the units answer fast again (an adapter's latency fixed): the rate comes back.
    drive(rate, t, 10.0, exchange_s=0.002, pv_every_s=0.1, other_per_pv=8)
    assert rate.divider == 1
    assert rate.busy < BUSY_HIGH


def test_safety_reads_that_cannot_be_kept_raise_one_error_per_episode(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rate = LineRate("rtu:/dev/ttyUSB0")
    caplog.set_level(logging.WARNING, logger="drivers.line")
    # Every exchange takes 300 ms (a unit answering slowly): the PV at most 3.3 Hz, 4 Hz needed.
    t = drive(rate, 0.0, 12.0, exchange_s=0.3, pv_every_s=0.0, other_per_pv=1)
    assert rate.divider == DIVIDER_MAX, "the other reads are lowered first, as far as they go"
    assert rate.overload is not None
    text = rate.overload
    assert "rtu:/dev/ttyUSB0" in text and "heater1" in text
    assert "needs 4.00 Hz" in text and "% busy" in text
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1, "once per episode, not every window"
    assert rate.overloads == 1
    # The unit answers in time again: the episode ends, a later one is reported again.
    t = drive(rate, t, 3.0, exchange_s=0.005, pv_every_s=0.1, other_per_pv=1)
    assert rate.overload is None
    drive(rate, t, 12.0, exchange_s=0.3, pv_every_s=0.0, other_per_pv=1)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2
    assert rate.overloads == 2


def test_a_silent_unit_is_not_the_lines_overload() -> None:
    """A unit that stops answering has no reads to rate: its staleness reports it."""
    rate = LineRate("rtu:/dev/x")
    t = drive(rate, 0.0, 3.0, exchange_s=0.01, pv_every_s=0.1, other_per_pv=1)
    for _ in range(30):
        t += 0.1
        rate.exchanged(t, 0.1, safety=True)  # timeouts
    assert rate.overload is None


def test_the_divider_a_device_applies_keeps_its_readings_within_their_stale_limit() -> None:
    rate = LineRate("rtu:/dev/x", divider=8)
    # Polled every 0.1 s, stale after 0.6 s: a reading must come twice in 0.6 s, every 0.3 s.
    assert rate.skip_cap(0.6, 0.1, POLLS_PER_STALE) == 3
    # Polled at 5 Hz with a 0.5 s stale limit: no room, every poll reads every block.
    assert rate.skip_cap(0.5, 0.2, POLLS_PER_STALE) == 1
    rate.divider = 2
    assert rate.skip_cap(5.0, 0.1, POLLS_PER_STALE) == 2


def test_the_o2_value_on_a_shared_line_is_a_safety_read() -> None:
    assert read_priority("o2_analyzer", "input", ("ppm", "status")) is Priority.SAFETY_READ
    assert read_priority("o2_analyzer", "input", ("sample_seq",)) is Priority.READ


@pytest.mark.hil
@pytest.mark.timeout(60)
async def test_a_controller_on_a_line_short_of_time_skips_only_its_non_safety_blocks(
    tmp_path: Path,
) -> None:
    """The heater controller on the simulator's wire-true 19200 baud line, its line's divider
    raised: its PV/status block is read at every poll, the other blocks on every k-th only, and
    no reading gets older than its stale limit allows."""
    path = render_config(tmp_path)
    devices, maps = load_devices(path)
    async with SimBooth(path, control_socket=False), DeviceSet(devices, maps) as dset:
        heater = dset.devices["heater1"]
        assert isinstance(heater, ModbusDevice)
        await wait_for(lambda: _all_good(heater), timeout_s=10.0, what="heater1 polled GOOD")
        sched = heater._line.scheduler
        sched.rate.divider = DIVIDER_MAX
        served = dict(sched.served)
        stale_s = heater.config.stale_s
        for _ in range(20):
            readings = await heater.poll()
            now = time.monotonic()
            assert all(now - r.ts <= stale_s / POLLS_PER_STALE + 0.1 for r in readings.values())
            await asyncio.sleep(0.05)  # the poller's pace: its measured interval sets the cap
        safety = sched.served[Priority.SAFETY_READ] - served[Priority.SAFETY_READ]
        other = sched.served[Priority.READ] - served[Priority.READ]
        assert safety >= 20, "every poll reads the PV and status"
        assert 0 < other <= 20 // 2, f"non-safety blocks read {other} times in 20 polls"


async def _all_good(dev: ModbusDevice) -> bool:
    r = await dev.poll()
    return all(x.quality is Quality.GOOD for x in r.values())
