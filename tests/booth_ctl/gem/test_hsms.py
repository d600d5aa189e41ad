"""The HSMS-SS passive entity against a raw-socket host on loopback: every control message,
the reject reasons, the S9 errors and the T3/T6/T7/T8 timers (short, so the tests are fast)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from booth_ctl.links.gem._hsms import (
    HsmsConnection,
    ReplyTimeout,
    Timers,
    unknown_function,
    unknown_stream,
)
from booth_ctl.links.gem._hsms_frame import Frame, SType, control, data, parse
from booth_ctl.links.gem._hsms_server import HsmsServer
from booth_ctl.links.gem._secs2 import U1, A, Item, decode, encode
from tests._util import wait_for

DEVICE = 3
FAST = Timers(t3_s=0.3, t6_s=0.3, t7_s=0.4, t8_s=0.3)


class Echo:
    """S1F1 -> S1F2 <L[0]>; S99 unknown stream; S1F99 unknown function."""

    def __init__(self) -> None:
        self.selected: list[HsmsConnection] = []
        self.not_selected = 0

    async def on_data(self, frame: Frame, item: Item | None) -> tuple[int, Item | None] | None:
        if frame.stream == 99:
            raise unknown_stream("no stream 99")
        if frame.function == 99:
            raise unknown_function("no function 99")
        if frame.stream == 1 and frame.function == 1:
            return 2, A("echo")
        if frame.stream == 1 and frame.function == 3:
            raise RuntimeError("a bug in the handler")
        return None

    def on_selected(self, conn: HsmsConnection) -> None:
        self.selected.append(conn)

    def on_not_selected(self) -> None:
        self.not_selected += 1


class Host:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.r, self.w = reader, writer
        self.sys = 100

    async def send(self, frame: Frame) -> None:
        self.w.write(frame.to_bytes())
        await self.w.drain()

    async def recv(self, timeout_s: float = 2.0) -> Frame:
        async with asyncio.timeout(timeout_s):
            n = int.from_bytes(await self.r.readexactly(4), "big")
            return parse(await self.r.readexactly(n))

    async def closed(self, timeout_s: float = 2.0) -> bool:
        async with asyncio.timeout(timeout_s):
            return await self.r.read(100) == b""

    async def select(self) -> Frame:
        self.sys += 1
        await self.send(control(SType.SELECT_REQ, self.sys))
        return await self.recv()

    async def primary(self, s: int, f: int, item: Item | None, device: int = DEVICE) -> Frame:
        self.sys += 1
        await self.send(data(s, f, item, device=device, system=self.sys, wbit=True))
        return await self.recv()


_hosts: list[Host] = []


@pytest.fixture
async def server() -> AsyncIterator[tuple[HsmsServer, Echo]]:
    echo = Echo()
    try:
        async with HsmsServer("127.0.0.1", 0, DEVICE, echo, FAST) as srv:
            yield srv, echo
    finally:
        for h in _hosts:
            h.w.close()
            with contextlib.suppress(Exception):
                await h.w.wait_closed()
        _hosts.clear()


async def connect(srv: HsmsServer) -> Host:
    r, w = await asyncio.open_connection("127.0.0.1", srv.port)
    _hosts.append(Host(r, w))
    return _hosts[-1]


async def test_select_then_data_then_deselect(server: tuple[HsmsServer, Echo]) -> None:
    srv, echo = server
    h = await connect(srv)
    rsp = await h.select()
    assert (rsp.stype, rsp.byte3, rsp.system) == (SType.SELECT_RSP, 0, h.sys)
    assert (await h.select()).byte3 == 1  # already active
    reply = await h.primary(1, 1, None)
    assert (reply.stream, reply.function, reply.system, reply.wbit) == (1, 2, h.sys, False)
    assert reply.session == DEVICE and decode(reply.text) == A("echo")
    h.sys += 1
    await h.send(control(SType.DESELECT_REQ, h.sys))
    rsp = await h.recv()
    assert (rsp.stype, rsp.byte3) == (SType.DESELECT_RSP, 0)
    assert echo.not_selected == 1
    # Not selected any more: data is rejected, reason 4.
    rej = await h.primary(1, 1, None)
    assert (rej.stype, rej.byte3, rej.byte2) == (SType.REJECT_REQ, 4, 0)
    h.sys += 1
    await h.send(control(SType.DESELECT_REQ, h.sys))
    assert (await h.recv()).byte3 == 1  # not established


async def test_linktest_and_the_reject_reasons(server: tuple[HsmsServer, Echo]) -> None:
    srv, _ = server
    h = await connect(srv)
    await h.send(control(SType.LINKTEST_REQ, 7))
    rsp = await h.recv()
    assert (rsp.stype, rsp.system) == (SType.LINKTEST_RSP, 7)
    await h.send(Frame(0xFFFF, 0, 0, 0, 42, 8))
    rej = await h.recv()
    assert (rej.stype, rej.byte2, rej.byte3, rej.system) == (SType.REJECT_REQ, 42, 1, 8)
    await h.send(Frame(0xFFFF, 0, 0, 5, SType.SELECT_REQ, 9))
    rej = await h.recv()
    assert (rej.byte2, rej.byte3) == (5, 2)
    await h.send(control(SType.LINKTEST_RSP, 10))
    assert (await h.recv()).byte3 == 3  # transaction not open
    rej = await h.primary(1, 1, None)
    assert rej.byte3 == 4


async def test_s9_errors(server: tuple[HsmsServer, Echo]) -> None:
    srv, _ = server
    h = await connect(srv)
    await h.select()
    for s, f, item, device, want in [
        (1, 1, None, DEVICE + 1, 1),
        (99, 1, None, DEVICE, 3),
        (1, 99, None, DEVICE, 5),
        (1, 3, None, DEVICE, 7),
    ]:
        s9 = await h.primary(s, f, item, device)
        assert (s9.stream, s9.function) == (9, want)
        # MHEAD: the header of the message it refuses.
        assert decode(s9.text).value == data(s, f, item, device=device, system=h.sys,
                                             wbit=True).header
    h.sys += 1
    broken = Frame(DEVICE, 0x81, 1, 0, 0, h.sys, bytes([0x41, 9]) + b"x")
    await h.send(broken)
    s9 = await h.recv()
    assert (s9.function, decode(s9.text).value) == (7, broken.header)
    # The link still serves.
    assert (await h.primary(1, 1, None)).function == 2


async def test_t7_closes_a_connection_that_never_selects(server: tuple[HsmsServer, Echo]) -> None:
    srv, _ = server
    h = await connect(srv)
    assert await h.closed(timeout_s=2.0)
    await wait_for(lambda: srv.connection is None, timeout_s=2.0, what="the seat freed after T7")


async def test_t8_closes_a_connection_stalled_inside_a_message(
    server: tuple[HsmsServer, Echo],
) -> None:
    srv, _ = server
    h = await connect(srv)
    await h.select()
    h.w.write(control(SType.LINKTEST_REQ, 1).to_bytes()[:6])
    await h.w.drain()
    assert await h.closed(timeout_s=2.0)


async def test_separate_frees_the_one_seat(server: tuple[HsmsServer, Echo]) -> None:
    srv, echo = server
    h = await connect(srv)
    await h.select()
    second = await connect(srv)
    second.sys += 1
    await second.send(control(SType.SELECT_REQ, second.sys))
    rsp = await second.recv()
    assert (rsp.stype, rsp.byte3) == (SType.SELECT_RSP, 1)
    assert await second.closed()
    assert srv.turned_away == 1
    await h.send(control(SType.SEPARATE_REQ, 55))
    assert await h.closed()
    assert echo.not_selected == 1
    third = await connect(srv)
    assert (await third.select()).byte3 == 0


async def test_equipment_requests_t3_and_t6(server: tuple[HsmsServer, Echo]) -> None:
    srv, echo = server
    h = await connect(srv)
    await h.select()
    conn = echo.selected[-1]

    async def answer() -> None:
        req = await h.recv()
        assert (req.stream, req.function, req.wbit) == (6, 11, True)
        await h.send(data(6, 12, U1(0), device=DEVICE, system=req.system, wbit=False))

    task = asyncio.create_task(answer())
    assert await conn.request(6, 11, A("x")) == U1(0)
    await task
    # No answer: T3, and S9F9 carries the unanswered header.
    with pytest.raises(ReplyTimeout, match="T3"):
        await conn.request(5, 1, None)
    first = await h.recv()
    s9 = await h.recv()
    assert (s9.stream, s9.function) == (9, 9)
    assert decode(s9.text).value == first.header

    async def answer_linktest() -> None:
        req = await h.recv()
        assert req.stype == SType.LINKTEST_REQ
        await h.send(control(SType.LINKTEST_RSP, req.system))

    task = asyncio.create_task(answer_linktest())
    await conn.linktest()
    await task
    # The host stays silent: T6 ends the connection.
    with pytest.raises(ReplyTimeout, match="T6"):
        await conn.linktest()
    assert (await h.recv()).stype == SType.LINKTEST_REQ
    assert await h.closed()


async def test_a_message_encodes_its_text(server: tuple[HsmsServer, Echo]) -> None:
    frame = data(1, 1, L := A("a"), device=1, system=2, wbit=True)
    assert frame.to_bytes()[4:] == frame.header + encode(L)
    assert str(frame) == "S1F1 W dev=1 sys=0x2"
