"""An RTU reply read in one piece: the port's reader paused until the reply can be whole."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path

import pytest
import uvloop
from pymodbus.transport.serialtransport import SerialTransport

from drivers import DeviceSet, ModbusDevice, Quality
from drivers._rtureply import reply_bytes
from sim_hw import SimBooth
from tests._util import render_config

from ._fakes import load_devices

# uvloop opens a pipe of its own, once per process, with its first loop: opened here, before the
# tests' descriptor guard looks.
uvloop.new_event_loop().close()


def test_reply_length_from_the_request() -> None:
    # unit 1, FC3, address 0, 2 registers (+ CRC): 5 + 4 bytes back.
    assert reply_bytes(bytes([1, 3, 0, 0, 0, 2, 0xC4, 0x0B])) == 9
    assert reply_bytes(bytes([1, 4, 0, 0, 0, 3, 0, 0])) == 11
    assert reply_bytes(bytes([1, 1, 0, 0, 0, 10, 0, 0])) == 7  # 10 coils: 2 bytes
    assert reply_bytes(bytes([1, 6, 0, 1, 0, 5, 0, 0])) == 8  # the echo of a write
    assert reply_bytes(bytes([1, 16, 0, 1, 0, 2, 4, 0, 1, 0, 2, 0, 0])) == 8
    assert reply_bytes(b"\x01\x03") == 5  # garbage: the shortest reply


@pytest.mark.hil
@pytest.mark.timeout(60)
def test_a_paced_reply_wakes_the_reader_once_or_twice_under_uvloop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The supervisor's own loop (uvloop), the simulator's wire-true 19200 baud line: without the
    pause each 9-byte reply wakes the reader once per piece the line hands over (5-6); with it,
    the reader wakes once or twice per reply and every reading is GOOD."""
    wakes = [0]
    read_ready = SerialTransport.intern_read_ready

    def counted(self: SerialTransport) -> None:
        wakes[0] += 1
        read_ready(self)

    monkeypatch.setattr(SerialTransport, "intern_read_ready", counted)
    path = render_config(tmp_path)
    devices, maps = load_devices(path)
    heater_only = {"heater1": devices["heater1"]}

    async def run() -> tuple[int, int]:
        async with SimBooth(path, control_socket=False), DeviceSet(heater_only, maps) as dset:
            heater = dset.devices["heater1"]
            assert isinstance(heater, ModbusDevice)
            for _ in range(5):  # connect, set-up, the turnaround measured
                await heater.poll()
            sched = heater._line.scheduler
            before, wakes[0] = sum(sched.served.values()), 0
            for _ in range(20):
                readings = await heater.poll()
                assert all(r.quality is Quality.GOOD for r in readings.values()), readings
                await asyncio.sleep(0.02)  # the poller's pace between polls, not a wait
            return sum(sched.served.values()) - before, wakes[0]

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        exchanges, n = runner.run(run())
    gc.collect()  # the loop's own pipe goes with the loop object
    assert exchanges >= 20
    # Simulator and drivers share this loop here: about 2.5 per exchange, 5.5 without the pause.
    assert n <= 3.5 * exchanges, f"{n} reader wake-ups for {exchanges} exchanges"
