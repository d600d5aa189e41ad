"""The simulated RS-485 line is wire-true: bytes at the baud rate, frames delimited by silence."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from pymodbus.framer import FramerRTU

from drivers import DeviceConfig, Quality, load_register_map, open_device
from drivers._config import RegisterMap, RtuTransport
from drivers._linesched import Priority
from drivers._modbus import ModbusLine
from sim_hw._banks import RegisterBank
from sim_hw._modbus import ModbusResponder, ModbusRtuServer, Unit
from sim_hw._wire import WireClock, WireTiming
from tests._util import CONFIG_DIR, holds, wait_for

pytestmark = pytest.mark.timeout(30)

TC_MAP = load_register_map(CONFIG_DIR / "maps" / "tc-generic.toml")
TURNAROUND_S = 0.003
#: The loop may wake late (the machine is shared); never early.
LATE_TOLERANCE_S = 0.030


def rtu(payload_hex: str) -> bytes:
    payload = bytes.fromhex(payload_hex)
    return payload + FramerRTU.compute_CRC(payload).to_bytes(2, "big")


# ------------------------------------------------------------------ pure timing


def test_character_and_silence_times() -> None:
    assert WireTiming(9600).char_s == pytest.approx(10 / 9600)
    assert WireTiming(9600, "E", 1).char_s == pytest.approx(11 / 9600)
    assert WireTiming(9600, "N", 2).bits_per_char == 11
    assert WireTiming(9600).silence_s == pytest.approx(3.5 * 10 / 9600)
    assert WireTiming(19200).silence_s == pytest.approx(3.5 * 10 / 19200)
    # Above 19200 baud the silence is a fixed 1.75 ms (Modbus serial line 2.5.1.1).
    assert WireTiming(38400).silence_s == pytest.approx(0.00175)
    assert WireTiming(115200).silence_s == pytest.approx(0.00175)
    with pytest.raises(ValueError, match="parity"):
        WireTiming(9600, "X")


def test_a_frame_starting_inside_the_silence_or_during_a_reply_is_lost() -> None:
    t = WireTiming(19200)
    clock = WireClock(t)
    clock.receive(8, 10.0)
    assert clock.frame_due_s() == pytest.approx(10.0 + 8 * t.char_s + t.silence_s)
    assert clock.take_frame()
    # The unit's reply ends at 10.02: a request 1 ms later breaks the 1.82 ms silence.
    clock.quiet_since_s = 10.02
    clock.receive(8, 10.021)
    assert not clock.take_frame()
    clock.quiet_since_s = 10.05
    clock.receive(8, 10.05 + t.silence_s + 1e-4)
    assert clock.take_frame()
    # A master that talks while the unit sends collides.
    clock.tx_busy = True
    clock.receive(8, 11.0)
    assert not clock.take_frame()
    clock.tx_busy = False
    # A gap of more than 1.5 characters inside a frame breaks it.
    clock.receive(3, 12.0)
    clock.receive(5, 12.0 + 3 * t.char_s + 2 * t.char_s)
    assert not clock.take_frame()


# ------------------------------------------------------------------ on a pty


@asynccontextmanager
async def line(
    path: Path, units: int, baudrate: int, offline: frozenset[str] = frozenset()
) -> AsyncIterator[tuple[ModbusRtuServer, dict[int, RegisterBank]]]:
    banks = {u: RegisterBank(f"tc{u}", TC_MAP) for u in range(1, units + 1)}
    for u, bank in banks.items():
        bank.set("pv_c", 200.0 + u)
    responder = ModbusResponder(
        {u: Unit(f"tc{u}", b) for u, b in banks.items()}, lambda d: d in offline
    )
    async with ModbusRtuServer(
        path, responder, WireTiming(baudrate), turnaround_s=TURNAROUND_S
    ) as server:
        yield server, banks


class RawMaster:
    """The client end of the pty, byte by byte, with arrival times."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        self.got: list[tuple[float, bytes]] = []
        self._more = asyncio.Event()
        asyncio.get_running_loop().add_reader(self.fd, self._readable)

    def _readable(self) -> None:
        with contextlib.suppress(BlockingIOError):
            self.got.append((time.monotonic(), os.read(self.fd, 512)))
            self._more.set()

    def send(self, frame: bytes) -> float:
        self.got.clear()
        sent = time.monotonic()
        os.write(self.fd, frame)
        return sent

    def data(self) -> bytes:
        return b"".join(d for _, d in self.got)

    async def reply(self, n_bytes: int, timeout_s: float = 1.0) -> bytes:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while len(self.data()) < n_bytes:
                    self._more.clear()
                    await self._more.wait()
        return self.data()

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self.fd)
        os.close(self.fd)


async def test_a_reply_takes_its_wire_time(tmp_path: Path) -> None:
    """At 9600 baud: request 8 bytes, reply of 3 registers 11 bytes, as a wire carries them."""
    t = WireTiming(9600)
    async with line(tmp_path / "rs485", 1, 9600) as (server, _):
        master = RawMaster(server.path)
        try:
            sent = master.send(rtu("010400000003"))
            reply = await master.reply(11)
            assert len(reply) == 11 and reply[:3] == bytes.fromhex("010406")
            first_s = master.got[0][0] - sent
            last_s = master.got[-1][0] - sent
            n_chunks = len(master.got)
        finally:
            master.close()
    # The first byte cannot come before the request has crossed the wire, the silence after it,
    # the unit's turnaround and its own character time; the last not before the whole reply.
    first_min_s = t.frame_s(8) + t.silence_s + TURNAROUND_S + t.char_s
    last_min_s = t.frame_s(8) + t.silence_s + TURNAROUND_S + t.frame_s(11)
    assert first_min_s - 1e-4 <= first_s <= first_min_s + LATE_TOLERANCE_S
    assert last_min_s - 1e-4 <= last_s <= last_min_s + LATE_TOLERANCE_S
    assert n_chunks >= 3  # paced over its 11.5 ms, not written at once


async def test_frames_that_break_the_silence_are_lost(tmp_path: Path) -> None:
    """A request sent while the unit's reply is on the wire collides: lost, nobody answers it.
    (A request inside the silence after a frame is lost too: see the pure test above; on a pty
    under load its 3.6 ms window is too narrow to hit reliably.)"""
    t = WireTiming(9600)
    request = rtu("010300000004")  # 4 holding registers: a 13-byte reply, 13.5 ms at 9600
    async with line(tmp_path / "rs485", 1, 9600) as (server, _):
        master = RawMaster(server.path)
        try:
            master.send(request)
            assert len(await master.reply(1)) >= 1
            # The reply's first byte is here, the rest still on the wire: talk now.
            os.write(master.fd, request)
            await master.reply(13)
            # No second reply: one would have come within 0.1 s.
            assert await holds(lambda: len(master.data()) == 13, duration_s=0.1)
            assert server.frames_lost == 1 and server.frames_served == 1
            # Two requests back to back, no silence between: one garbled frame, no answer.
            # The inter-frame silence the protocol requires (what the simulator enforces).
            await asyncio.sleep(2 * t.silence_s)  # the silence before the next frame
            master.send(request + request)
            assert await master.reply(13, timeout_s=0.1) == b""
            assert server.frames_bad == 1
            # After the silence the line works again.
            await asyncio.sleep(2 * t.silence_s)  # the silence again
            master.send(request)
            assert len(await master.reply(13)) == 13
        finally:
            master.close()


def _tc(path: Path, unit: int, baudrate: int) -> DeviceConfig:
    return DeviceConfig.model_validate(
        {
            "kind": "temp_controller",
            "map": "tc-generic.toml",
            "transport": {"type": "rtu", "port": str(path), "baudrate": baudrate, "unit": unit},
            "timeout_s": 0.05,
            "retries": 0,
            "poll_hz": 10.0,
        }
    )


async def test_four_units_one_offline_the_others_stay_fresh(tmp_path: Path) -> None:
    """Four controllers on one 19200 line, unit 3 offline: 1, 2 and 4 keep fresh GOOD readings,
    unit 3 is NO_COMM, and the drivers' requests all keep the silence (no frame lost)."""
    path = tmp_path / "rs485"
    async with line(path, 4, 19200, offline=frozenset({"tc3"})) as (server, _):
        lines: dict[str, ModbusLine] = {}
        devices = {
            u: open_device(f"tc{u}", _tc(path, u, 19200), TC_MAP, lines=lines) for u in (1, 2, 3, 4)
        }
        try:

            async def round_() -> dict[int, object]:
                results = await asyncio.gather(*(d.poll() for d in devices.values()))
                return dict(zip(devices, results, strict=True))

            async def settled() -> bool:
                r = await round_()
                return all(r[u]["pv_c"].quality is Quality.GOOD for u in (1, 2, 4)) and (  # type: ignore[index]
                    r[3]["pv_c"].quality is Quality.NO_COMM  # type: ignore[index]
                )

            await wait_for(settled, timeout_s=5.0, what="units 1, 2, 4 GOOD and 3 NO_COMM")
            for _ in range(10):
                r = await round_()
                for u in (1, 2, 4):
                    reading = r[u]["pv_c"]  # type: ignore[index]
                    assert reading.quality is Quality.GOOD and reading.value == 200.0 + u
            assert server.frames_lost == 0 and server.frames_bad == 0
        finally:
            for line_ in lines.values():
                await line_.aclose()


async def test_a_safety_read_is_not_starved_by_long_block_reads(tmp_path: Path) -> None:
    """On a 9600 baud line, three tasks keep 100-register block reads queued (each ~0.23 s on
    the wire); a PV read waits for the one block on the wire, never for the queue behind it."""
    big = RegisterMap.model_validate(
        {
            "name": "big",
            "points": {
                **{f"r{i}": {"table": "holding", "address": i} for i in range(100)},
                "pv_c": {"table": "input", "address": 0},
            },
        }
    )
    t = WireTiming(9600)
    block_s = t.exchange_s(8, 5 + 200, TURNAROUND_S)
    path = tmp_path / "rs485"
    bank = RegisterBank("big", big)
    responder = ModbusResponder({1: Unit("big", bank)}, lambda d: False)
    async with ModbusRtuServer(path, responder, t, turnaround_s=TURNAROUND_S):
        line = ModbusLine(RtuTransport(type="rtu", port=str(path), baudrate=9600, unit=1))
        stop = asyncio.Event()

        async def read(table: str, count: int, priority: Priority) -> None:
            await line.read(
                "big", 1, table=table, address=0, count=count, timeout_s=1.0, priority=priority
            )

        async def blocks() -> None:
            while not stop.is_set():
                await read("holding", 100, Priority.READ)

        hogs = [asyncio.create_task(blocks()) for _ in range(3)]
        waits: list[float] = []
        try:
            # One block on the wire, the other two queued behind it.
            await wait_for(
                lambda: line.scheduler.waiting >= 2, timeout_s=5.0, what="two blocks queued"
            )
            for _ in range(4):
                t0 = time.monotonic()
                await read("input", 1, Priority.SAFETY_READ)
                waits.append(time.monotonic() - t0)
                # Paced on purpose: each PV read meets a fresh block on the wire.
                await asyncio.sleep(0.05)
        finally:
            stop.set()
            await asyncio.gather(*hogs)
            await line.aclose()
    # One block on the wire at most, plus the PV exchange itself, plus scheduling slack; in
    # arrival order it would wait for up to three blocks (~0.7 s).
    assert max(waits) < block_s + 0.1 + LATE_TOLERANCE_S, (waits, block_s)
