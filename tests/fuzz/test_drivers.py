"""Driver decoding against random bytes: a Modbus TCP server and an RTU line that answer with
hypothesis-drawn replies, and an O2 analyzer line carrying random bytes.

The hand-written hostile cases (every exception code, wrong unit or function, short, truncated,
bad CRC, garbage) are in tests/drivers; these add what no hand-written list covers. Every poll
returns in bounded time with typed qualities (nothing raises out of it), a write under garbage
fails with a device error, and the driver reads good values again once the device is honest.
"""

from __future__ import annotations

import contextlib
import math
import struct
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymodbus.framer import FramerRTU

from drivers import DeviceError, ModbusDevice, O2Analyzer, Quality, open_device
from drivers._o2proto import MAX_LINE_BYTES, LineError, Measurement, Reply, frame, parse_line
from tests._util import wait_for
from tests.drivers._fakes import Bank, HostileTcpServer, PtyLine, PtyRtuServer
from tests.drivers.test_modbus import TC_MAP, rtu_config, tc_bank, tcp_config
from tests.drivers.test_o2 import o2_config

from ._scale import examples

pytestmark = pytest.mark.timeout(60)

IO_SETTINGS = settings(
    max_examples=examples(20),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
#: A poll may try each block 1 + retries times at timeout_s each; far under this, always.
POLL_BOUND_S = 1.5
RECOVER_S = 5.0

#: Makes one reply from (transaction id, unit, request PDU, honest reply PDU).
Reply_ = Callable[[int, int, bytes, bytes], bytes]


@st.composite
def tcp_replies(draw: st.DrawFn) -> Reply_:
    kind = draw(st.sampled_from(["raw", "random_pdu", "bad_length", "flipped", "honest_split"]))
    blob = draw(st.binary(min_size=0, max_size=40))
    pos = draw(st.integers(min_value=0, max_value=255))
    bit = draw(st.integers(min_value=0, max_value=7))
    length = draw(st.integers(min_value=0, max_value=0xFFFF))

    def make(tid: int, unit: int, _req: bytes, honest: bytes) -> bytes:
        mbap = struct.pack(">HHHB", tid, 0, len(honest) + 1, unit)
        if kind == "raw":
            return blob
        if kind == "random_pdu":
            return struct.pack(">HHHB", tid, 0, len(blob) + 1, unit) + blob
        if kind == "bad_length":
            return struct.pack(">HHHB", tid, 0, length, unit) + honest
        if kind == "flipped":
            good = bytearray(mbap + honest)
            good[pos % len(good)] ^= 1 << bit
            return bytes(good)
        return (mbap + honest)[: pos % (len(honest) + 7)]  # a prefix of an honest reply

    return make


class ScriptedTcpServer(HostileTcpServer):
    """Answers from ``script`` (one maker per request) while it lasts, honestly after."""

    def __init__(self, banks: dict[int, Bank]) -> None:
        super().__init__(banks)
        self.script: list[Reply_] = []

    def respond(self, tid: int, unit: int, pdu: bytes) -> bytes | None:
        honest = self.banks[1].answer(pdu)
        if self.script:
            return self.script.pop(0)(tid, unit, pdu, honest)
        return struct.pack(">HHHB", tid, 0, len(honest) + 1, unit) + honest


@dataclass
class TcpRig:
    server: ScriptedTcpServer
    dev: ModbusDevice


@pytest.fixture
async def tcp_rig() -> AsyncIterator[TcpRig]:
    server = ScriptedTcpServer({1: tc_bank(pv_raw=2500)})
    async with server:
        dev = open_device("heater1", tcp_config(server.port, retries=1), TC_MAP)
        assert isinstance(dev, ModbusDevice)
        async with dev:
            yield TcpRig(server, dev)


async def _recovers(dev: ModbusDevice | O2Analyzer, point: str, value: float) -> None:
    """The device reads ``value`` again, GOOD, within RECOVER_S."""
    seen: list[object] = [None]

    async def good_again() -> bool:
        dev.health.retry_at_s = 0.0  # no backoff wait: the test is about decoding
        seen[0] = last = (await dev.poll())[point]
        return last.quality is Quality.GOOD and last.value == pytest.approx(value)

    try:
        await wait_for(good_again, timeout_s=RECOVER_S, what=f"{dev.name}.{point} good again")
    except AssertionError:
        raise AssertionError(f"{dev.name}.{point} not good again: last {seen[0]}") from None


async def _poll_under_garbage(dev: ModbusDevice) -> None:
    dev.health.retry_at_s = 0.0
    start = time.monotonic()
    readings = await dev.poll()
    assert time.monotonic() - start < POLL_BOUND_S
    for r in readings.values():
        assert isinstance(r.quality, Quality)
        if r.quality is Quality.GOOD and isinstance(r.value, float):
            assert math.isfinite(r.value)


@IO_SETTINGS
@given(replies=st.lists(tcp_replies(), min_size=1, max_size=4))
async def test_random_tcp_replies_never_break_the_driver(
    tcp_rig: TcpRig, replies: list[Reply_]
) -> None:
    tcp_rig.server.script = list(replies)
    await _poll_under_garbage(tcp_rig.dev)
    tcp_rig.server.script = list(replies)
    # Refused or unanswered: a typed device error, nothing else.
    with contextlib.suppress(DeviceError):
        await tcp_rig.dev.write("sv_c", 100.0)
    tcp_rig.server.script = []
    await _recovers(tcp_rig.dev, "pv_c", 250.0)


# ---------------------------------------------------------------------- RTU


@st.composite
def rtu_replies(draw: st.DrawFn) -> Callable[[bytes], bytes]:
    kind = draw(st.sampled_from(["raw", "random_pdu_good_crc", "flipped", "prefix", "doubled"]))
    blob = draw(st.binary(min_size=0, max_size=40))
    pos = draw(st.integers(min_value=0, max_value=255))
    bit = draw(st.integers(min_value=0, max_value=7))

    def make(honest_adu: bytes) -> bytes:
        good = honest_adu + FramerRTU.compute_CRC(honest_adu).to_bytes(2, "big")
        if kind == "raw":
            return blob
        if kind == "random_pdu_good_crc":
            adu = honest_adu[:1] + blob
            return adu + FramerRTU.compute_CRC(adu).to_bytes(2, "big")
        if kind == "flipped":
            out = bytearray(good)
            out[pos % len(out)] ^= 1 << bit
            return bytes(out)
        if kind == "prefix":
            return good[: pos % len(good)]
        return good + good  # the reply twice: the second is unexpected

    return make


class ScriptedRtuLine(PtyRtuServer):
    def __init__(self, link: Path, bank: Bank) -> None:
        super().__init__(link, {1: bank})
        self.script: list[Callable[[bytes], bytes]] = []

    def received(self, data: bytes) -> None:
        if not self.script:
            super().received(data)
            return
        self._buf += data
        while len(self._buf) >= 8 and self.script:
            req, self._buf = self._buf[:8], self._buf[8:]
            honest = bytes([req[0]]) + self.banks[1].answer(req[1:6])
            self.send(self.script.pop(0)(honest))
        if not self.script and self._buf:
            super().received(b"")


@dataclass
class RtuRig:
    line: ScriptedRtuLine
    dev: ModbusDevice


@pytest.fixture
async def rtu_rig(tmp_path: Path) -> AsyncIterator[RtuRig]:
    line = ScriptedRtuLine(tmp_path / "rs485", tc_bank(pv_raw=1234))
    async with line:
        dev = open_device("heater1", rtu_config(line.link, 1, retries=1), TC_MAP)
        assert isinstance(dev, ModbusDevice)
        async with dev:
            yield RtuRig(line, dev)


@IO_SETTINGS
@given(replies=st.lists(rtu_replies(), min_size=1, max_size=4))
async def test_random_rtu_replies_never_break_the_driver(
    rtu_rig: RtuRig, replies: list[Callable[[bytes], bytes]]
) -> None:
    rtu_rig.line.script = list(replies)
    await _poll_under_garbage(rtu_rig.dev)
    rtu_rig.line.script = []
    await _recovers(rtu_rig.dev, "pv_c", 123.4)


# ---------------------------------------------------------------------- O2 analyzer lines


@settings(max_examples=examples(500), deadline=None)
@given(line=st.binary(max_size=200) | st.text(max_size=60).map(lambda s: s.encode("utf-8")))
def test_any_bytes_parse_to_a_value_or_a_line_error(line: bytes) -> None:
    try:
        got = parse_line(line)
    except LineError:
        return
    assert isinstance(got, Measurement | Reply)
    if isinstance(got, Measurement):
        assert math.isfinite(got.ppm) and got.ppm >= 0


@settings(max_examples=examples(500), deadline=None)
@given(body=st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=127), max_size=40))
def test_well_framed_lines_with_any_body(body: str) -> None:
    """A correct checksum does not make a body trustworthy: NaN, inf, negative, odd fields."""
    for text in (body, f"O2,{body}", f"O2,{body},OK", f"O2,1.0,{body}"):
        try:
            got = parse_line(frame(text))
        except LineError:
            continue
        if isinstance(got, Measurement):
            assert math.isfinite(got.ppm) and got.ppm >= 0
            assert got.status in ("OK", "ERR", "CAL")


@pytest.fixture
async def o2_line(tmp_path: Path) -> AsyncIterator[tuple[PtyLine, O2Analyzer]]:
    line = PtyLine(tmp_path / "o2")
    async with line:
        dev = open_device("o2", o2_config(line.link, stale_s=5.0))
        assert isinstance(dev, O2Analyzer)
        async with dev:
            await wait_for(lambda: dev.connected, timeout_s=5.0, what="o2 port open")
            yield line, dev


@settings(
    max_examples=examples(30),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    noise=st.lists(st.binary(min_size=1, max_size=3 * MAX_LINE_BYTES), min_size=1, max_size=3),
    ppm=st.integers(min_value=0, max_value=99_999),
)
async def test_random_serial_bytes_then_a_good_line(
    o2_line: tuple[PtyLine, O2Analyzer], noise: list[bytes], ppm: int
) -> None:
    line, dev = o2_line
    for chunk in noise:
        line.send(chunk)
    # The line end closes whatever the noise left open; the next line must be read exactly.
    value = ppm / 10
    line.send(b"\r\n" + frame(f"O2,{value:.1f},OK"))
    await _recovers(dev, "ppm", value)
