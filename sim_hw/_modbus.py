"""Modbus TCP and RTU servers: thin adapters over the register banks.

Frames are decoded and encoded with pymodbus's own framers and PDU classes (so the wire format is
exactly what a pymodbus master expects); the requests are answered from the banks. We do not use
pymodbus's server classes because a simulator must be able to fall silent per unit (a device
that is offline sends nothing at all, not an exception reply), which they cannot do.

Several units may share one endpoint: devices of one RS-485 line (one pty), or devices behind one
TCP gateway (one host:port). A request for a unit that is not there, or is offline, gets no reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerBase, FramerRTU, FramerSocket
from pymodbus.pdu import DecodePDU, ExceptionResponse, ModbusPDU

from ._banks import FUNCTION_TABLE, AddressError, RegisterBank
from ._pty import PtyLink
from ._streams import close_server
from ._wire import WireClock, WireTiming

log = logging.getLogger(__name__)

#: Function codes served: read/write bits and registers (Modbus application protocol v1.1b3).
SERVED_FUNCTIONS = frozenset(FUNCTION_TABLE)
#: Single writes, whose normal reply is an echo of the request.
ECHO_FUNCTIONS = frozenset({5, 6})
#: Read requests (bits and registers), as counted in each bank's ``reads``.
READ_FUNCTIONS = frozenset({1, 2, 3, 4})
#: A unit's turnaround (request received to reply started), unless the config says otherwise:
#: controllers' manuals give a few ms (e.g. "response delay" settings of 0-250 ms, default
#: a few ms); 3 ms is a middle value, unconfirmed for any one model.
DEFAULT_TURNAROUND_S = 0.003
#: Address, function code and CRC: nothing shorter is an RTU frame.
RTU_MIN_FRAME = 4
#: The shortest sleep while pacing a reply: bytes that fell due meanwhile go out together, so a
#: reply costs a few wake-ups, not one per character, and no byte leaves before its time.
PACE_TICK_S = 0.001
#: A TCP buffer this long without a whole frame is garbage: drop the connection.
TCP_MAX_PENDING = 512
READ_CHUNK = 4096


@dataclass
class Unit:
    device: str
    bank: RegisterBank


class _BankContext:
    """What pymodbus's request PDUs call to run themselves against a datastore."""

    def __init__(self, units: dict[int, Unit]) -> None:
        self.units = units

    async def async_getValues(
        self, device_id: int, func_code: int, address: int, count: int = 1
    ) -> list[int] | list[bool] | ExcCodes:
        table = FUNCTION_TABLE[func_code]
        bank = self.units[device_id].bank
        if func_code in READ_FUNCTIONS:
            bank.reads[table] += 1
        try:
            raw = bank.read(table, address, count)
        except AddressError:
            return ExcCodes.ILLEGAL_ADDRESS
        if table in ("coil", "discrete"):
            return [bool(v) for v in raw]
        return raw

    async def async_setValues(
        self, device_id: int, func_code: int, address: int, values: list[int] | list[bool]
    ) -> ExcCodes | None:
        try:
            self.units[device_id].bank.write(
                FUNCTION_TABLE[func_code], address, [int(v) for v in values]
            )
        except AddressError:
            return ExcCodes.ILLEGAL_ADDRESS
        return None


class ModbusResponder:
    """Turns one request frame into its reply frame (or None: stay silent)."""

    def __init__(
        self, units: dict[int, Unit], offline: Callable[[str], bool], *, tcp: bool = False
    ) -> None:
        self.units = dict(units)
        if tcp and len(units) == 1:
            # A Modbus TCP device answers its own unit id and also 0 and 255, the ids a TCP
            # master uses to address "the device itself" (Modbus messaging on TCP/IP, 4.4.2).
            only = next(iter(units.values()))
            self.units.setdefault(0, only)
            self.units.setdefault(255, only)
        self._offline = offline
        self._context = _BankContext(self.units)
        self._decoder = DecodePDU(True)

    async def respond(
        self, framer: FramerBase, dev_id: int, tid: int, frame: bytes
    ) -> bytes | None:
        unit = self.units.get(dev_id)
        if unit is None or self._offline(unit.device):
            return None
        function_code = frame[0]
        pdu = None
        if function_code in SERVED_FUNCTIONS:
            with contextlib.suppress(Exception):
                pdu = self._decoder.decode(frame)
        response: ModbusPDU
        if pdu is None:
            response = ExceptionResponse(function_code, ExcCodes.ILLEGAL_FUNCTION)
        else:
            pdu.dev_id = dev_id
            pdu.transaction_id = tid
            # The PDU only calls async_getValues/async_setValues on its datastore.
            response = await pdu.datastore_update(self._context, dev_id)  # type: ignore[arg-type]
            if function_code in ECHO_FUNCTIONS and not isinstance(response, ExceptionResponse):
                # FC 05/06 answer with an echo of the request (Modbus application protocol
                # 6.5/6.6), not with what the device kept: a device that refuses the value in
                # effect (a tripped watchdog) still echoes, and only a readback tells.
                response.bits = list(pdu.bits)
                response.registers = list(pdu.registers)
        response.dev_id = dev_id
        response.transaction_id = tid
        return framer.buildFrame(response)


class ModbusTcpServer:
    """Async context manager: a Modbus TCP endpoint (host:port) serving its units."""

    def __init__(self, host: str, port: int, responder: ModbusResponder) -> None:
        self.host = host
        self.port = port
        self.responder = responder
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> ModbusTcpServer:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await close_server(self._server, self._connections)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        framer = FramerSocket(DecodePDU(True))
        buf = bytearray()
        try:
            while data := await reader.read(READ_CHUNK):
                buf += data
                while len(buf) >= 8:
                    if buf[2:4] != b"\0\0":
                        return  # not Modbus (protocol id must be 0)
                    used, dev_id, tid, frame = framer.decode(bytes(buf))
                    if not used:
                        break
                    del buf[:used]
                    if frame:
                        reply = await self.responder.respond(framer, dev_id, tid, frame)
                        if reply is not None:
                            writer.write(reply)
                            await writer.drain()
                if len(buf) > TCP_MAX_PENDING:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


class ModbusRtuServer:
    """Async context manager: one RS-485 line (a pty linked at ``path``) and its units.

    Wire-true (``sim_hw._wire``): a request counts as received when its last character would
    have arrived at the line's baud rate and the inter-frame silence after it has passed; the
    addressed unit then waits its turnaround and sends its reply one character time per byte. A
    request that breaks the silence rules (starts while a unit is still sending, or too soon
    after the last frame, or has a gap inside) is lost, as on a real line: nobody answers it.
    """

    def __init__(
        self,
        path: Path,
        responder: ModbusResponder,
        timing: WireTiming | None = None,
        *,
        turnaround_s: float = DEFAULT_TURNAROUND_S,
        adapter_latency_s: float = 0.0,
    ) -> None:
        self.path = path
        self.responder = responder
        self.timing = timing or WireTiming(19200)
        self.turnaround_s = turnaround_s
        #: A USB-serial adapter's latency timer (an FTDI's is 16 ms by default): a short reply
        #: reaches the host only when the timer expires after its last byte, all at once.
        self.adapter_latency_s = adapter_latency_s
        self.clock = WireClock(self.timing)
        #: Requests lost to the silence rules, and requests not making one whole valid frame.
        self.frames_lost = 0
        self.frames_bad = 0
        self.frames_served = 0
        self._framer = FramerRTU(DecodePDU(True))
        self._pty = PtyLink(path, self._on_data)
        self._buf = bytearray()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> ModbusRtuServer:
        await self._pty.__aenter__()
        self._task = asyncio.create_task(self._serve(), name=f"rtu-server {self.path}")
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._pty.__aexit__(et, e, tb)

    def _on_data(self, data: bytes) -> None:
        if not self.clock.rx_pending:
            self._buf.clear()
        self.clock.receive(len(data), time.monotonic())
        self._buf += data
        self._wake.set()

    async def _serve(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            # The frame is over once the silence after its last character has passed; more
            # bytes meanwhile move that moment on.
            await self._frame_over()
            if not self.clock.rx_pending:
                continue
            kept = self.clock.take_frame()
            data, self._buf = bytes(self._buf), bytearray()
            self._wake.clear()
            if not kept:
                self.frames_lost += 1
                log.debug(
                    "%s: %d-byte frame lost: %s", self.path, len(data), self.clock.broken_reason
                )
                continue
            reply = await self._answer(data)
            if reply is None:
                continue
            await asyncio.sleep(self.turnaround_s)
            if self.clock.rx_pending:
                # The master gave up and is sending again: our reply would collide with it.
                self.frames_lost += 1
                self.clock.broken_reason = "the master sent again during the turnaround"
                continue
            # Half duplex: the master reads a reply before its next request, so anything it
            # has not read yet answers a request it gave up on.
            if self._pty.pending_to_client():
                self._pty.drop_pending_to_client()
            await self._send(reply)

    async def _frame_over(self) -> None:
        """Until the silence after the frame's last character (which later bytes move on)."""
        while True:
            wait_s = self.clock.frame_due_s() - time.monotonic()
            if wait_s <= 0:
                return
            await asyncio.sleep(wait_s)

    async def _answer(self, data: bytes) -> bytes | None:
        """The reply to one whole frame, or None (not one valid frame, or nobody answers)."""
        # The whole silence-delimited buffer must be one frame: its CRC covers all of it (the
        # framer alone would also take two frames run together, or skip leading noise).
        whole_crc_ok = len(data) >= RTU_MIN_FRAME and FramerRTU.compute_CRC(
            data[:-2]
        ) == int.from_bytes(data[-2:], "big")
        used, dev_id, _tid, frame = self._framer.decode(data) if whole_crc_ok else (0, 0, 0, b"")
        if used != len(data) or not frame or len(frame) + 3 != len(data):
            # Noise, a CRC error, or two frames without the silence between them.
            self.frames_bad += 1
            return None
        self.frames_served += 1
        return await self.responder.respond(self._framer, dev_id, 0, frame)

    async def _send(self, reply: bytes) -> None:
        """One character time per byte; the pty gets each byte once it has fully left."""
        clock, timing = self.clock, self.timing
        clock.tx_busy = True
        if self.adapter_latency_s > 0:
            try:
                await asyncio.sleep(timing.frame_s(len(reply)))
            finally:
                clock.tx_busy = False
                clock.quiet_since_s = time.monotonic()
            await asyncio.sleep(self.adapter_latency_s)
            self._pty.write(reply)
            return
        start_s = last_write_s = time.monotonic()
        try:
            sent = 0
            while sent < len(reply):
                now_s = time.monotonic()
                due = min(len(reply), timing.bytes_due(start_s, now_s))
                if due > sent:
                    # Stamped before the write: the master may read the bytes (on another
                    # core) before this process runs again, so the silence counts from here.
                    last_write_s = now_s
                    self._pty.write(reply[sent:due])
                    sent = due
                if sent < len(reply):
                    next_s = start_s + (sent + 1) * timing.char_s
                    await asyncio.sleep(max(next_s - now_s, PACE_TICK_S))
        finally:
            clock.tx_busy = False
            clock.quiet_since_s = last_write_s
