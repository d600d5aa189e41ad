"""One Modbus link (a TCP connection or an RS-485 line), shared by the devices on it.

pymodbus does the framing; this module owns everything around it, because pymodbus's own
policies do not fit a supervisor:

- pymodbus retries a request ``retries`` times and, after ``retries + 3`` unanswered requests in
  a row, closes a TCP connection by itself; it reconnects in a background task of its own. On a
  shared line one dead unit would then take the line down for the live ones. Here pymodbus is
  built with ``retries=0``, automatic reconnection off and the no-answer counter out of reach;
  the link is closed only when the transport itself is lost (socket reset, serial port gone),
  never because a unit does not answer. Retries are the device's, bounded by its config.
- Every request runs under its own deadline (the device's ``timeout_s``); pymodbus's own
  timeout is set far longer so that ours always decides.
- A reply pymodbus cannot decode raises inside the transport's receive callback, where it would
  either close the socket (TCP) or escape into the event loop (serial). It is caught here and
  fails the waiting request at once as a ProtocolError.
- Bytes that arrive without making a valid frame (CRC error, wrong unit, truncated frame) look to
  pymodbus like silence; they are noticed, so that the timeout becomes a ProtocolError (the
  device talks, but garbage) rather than a DeviceTimeout (nobody there).
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException
from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU

from ._config import RtuTransport, Table, TcpTransport
from ._errors import (
    ConfigError,
    DeviceDisconnected,
    DeviceTimeout,
    ModbusExceptionReply,
    ProtocolError,
)
from ._linesched import LineScheduler, Priority, char_s, silence_s
from ._ports import port_identity
from ._rtureply import ReplyWait

log = logging.getLogger(__name__)

#: Reconnection backoff of a link: first retry after the minimum, doubling up to the cap.
BACKOFF_MIN_S = 0.1
BACKOFF_MAX_S = 2.0
#: Opening a socket or a serial port is given at least this long, whatever the request timeout.
CONNECT_TIMEOUT_MIN_S = 0.25
#: pymodbus's internal reply timeout; longer than any request deadline of ours (config caps
#: ``timeout_s`` at 10 s), so that it never fires first and never counts a no-answer.
PYMODBUS_TIMEOUT_S = 60.0
#: Effectively "never": pymodbus closes a TCP link after this many unanswered requests in a row.
PYMODBUS_MAX_NO_RESPONSES = 1 << 30

FC_READ = {"coil": 1, "discrete": 2, "holding": 3, "input": 4}
FC_WRITE_COIL = 5
FC_WRITE_REGISTER = 6

# pymodbus logs every timeout and every skipped frame at ERROR; the drivers turn each failure into
# a reading's quality and log once per episode. pymodbus's chatter stays available on demand.
if logging.getLogger("pymodbus").level == logging.NOTSET:
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)

Client = AsyncModbusTcpClient | AsyncModbusSerialClient


def line_key(transport: TcpTransport | RtuTransport) -> str:
    """Devices with the same key share one client and one scheduler."""
    if isinstance(transport, TcpTransport):
        return f"tcp://{transport.host}:{transport.port}"
    return f"rtu:{transport.port}"


class ModbusLine:
    """A Modbus link: one pymodbus client and one scheduler, opened lazily, reopened with
    backoff."""

    def __init__(self, transport: TcpTransport | RtuTransport) -> None:
        self.transport = transport
        self.key = line_key(transport)
        #: One request at a time on the link, by priority: RS-485 is half duplex, and one TCP
        #: connection to a gateway serves its units in turn (``drivers._linesched``).
        quiet_s = (
            silence_s(transport.baudrate, transport.parity, transport.stopbits)
            if isinstance(transport, RtuTransport)
            else 0.0
        )
        self.scheduler = LineScheduler(self.key, quiet_s)
        #: Rises by one on every successful (re)connect: devices re-send their set-up after it.
        self.generation = 0
        self._client: Client | None = None
        self._port_id: tuple[int, int, int] | None = None
        self._retry_at_s = 0.0
        self._backoff_s = BACKOFF_MIN_S
        #: Whether anything arrived since the current request went out.
        self._rx_seen = False
        self._closed = False
        self._reply_wait = (
            ReplyWait(char_s(transport.baudrate, transport.parity, transport.stopbits))
            if isinstance(transport, RtuTransport)
            else None
        )

    def check_compatible(self, device: str, transport: TcpTransport | RtuTransport) -> None:
        """Devices sharing a serial line must agree on how it is set up."""
        if transport.model_copy(update={"unit": 0}) != self.transport.model_copy(
            update={"unit": 0}
        ):
            raise ConfigError(
                f"devices.{device}.transport: shares {self.key} with another device but its "
                f"line settings differ ({transport} vs {self.transport})"
            )

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.connected

    # ------------------------------------------------------------------ requests

    async def read(
        self,
        device: str,
        unit: int,
        *,
        table: Table,
        address: int,
        count: int,
        timeout_s: float,
        priority: Priority = Priority.READ,
    ) -> list[int]:
        """Registers (0..65535) or bits (0/1) of one block; one attempt, typed errors."""
        fc = FC_READ[table]

        def call(c: Client) -> Awaitable[ModbusPDU]:
            if table == "coil":
                return c.read_coils(address, count=count, device_id=unit)
            if table == "discrete":
                return c.read_discrete_inputs(address, count=count, device_id=unit)
            if table == "holding":
                return c.read_holding_registers(address, count=count, device_id=unit)
            return c.read_input_registers(address, count=count, device_id=unit)

        pdu = await self._execute(device, address, timeout_s, call, priority)
        _check_function(device, address, pdu, fc)
        if table in ("coil", "discrete"):
            bits = list(pdu.bits)
            # Bits come packed in whole bytes: a reply for `count` bits has exactly that many bytes.
            if len(bits) != 8 * ((count + 7) // 8):
                raise ProtocolError(
                    device,
                    f"read {count} {table} bits: reply carries {len(bits) // 8} bytes, "
                    f"expected {(count + 7) // 8}",
                    address=address,
                )
            return [int(b) for b in bits[:count]]
        registers = list(pdu.registers)
        if len(registers) != count:
            raise ProtocolError(
                device,
                f"read {count} {table} registers: reply carries {len(registers)}",
                address=address,
            )
        return [int(r) & 0xFFFF for r in registers]

    async def write(
        self,
        device: str,
        unit: int,
        *,
        table: Table,
        address: int,
        raw: int,
        timeout_s: float,
        priority: Priority = Priority.WRITE,
    ) -> None:
        """One write (coil or holding register), one attempt: a write is never repeated blindly."""
        if table == "coil":
            fc = FC_WRITE_COIL

            def call(c: Client) -> Awaitable[ModbusPDU]:
                return c.write_coil(address, bool(raw), device_id=unit)
        elif table == "holding":
            fc = FC_WRITE_REGISTER

            def call(c: Client) -> Awaitable[ModbusPDU]:
                return c.write_register(address, raw, device_id=unit)
        else:
            raise ProtocolError(device, f"a {table} cannot be written", address=address)
        pdu = await self._execute(device, address, timeout_s, call, priority)
        _check_function(device, address, pdu, fc)
        values = pdu.bits if table == "coil" else pdu.registers
        echoed = int(values[0]) if values else None
        if pdu.address != address or echoed != raw:
            raise ProtocolError(
                device,
                f"write echo mismatch: sent {raw} to {address}, echo {echoed} at {pdu.address}",
                address=address,
            )

    async def _execute(
        self,
        device: str,
        address: int,
        timeout_s: float,
        call: Callable[[Client], Awaitable[ModbusPDU]],
        priority: Priority,
    ) -> ModbusPDU:
        async with self.scheduler.turn(priority):
            client = await self._connected_client(device, timeout_s)
            self._rx_seen = False
            try:
                async with asyncio.timeout(timeout_s):
                    return await call(client)
            except TimeoutError as exc:
                if self._rx_seen:
                    raise ProtocolError(
                        device,
                        f"data received but no valid reply within {timeout_s} s "
                        "(CRC, length, unit or transaction mismatch)",
                        address=address,
                    ) from exc
                if not client.connected:
                    self._drop_client()
                    raise DeviceDisconnected(
                        device, f"{self.key} lost while waiting for a reply", address=address
                    ) from exc
                self._check_port_still_there()
                raise DeviceTimeout(
                    device, f"no reply within {timeout_s} s on {self.key}", address=address
                ) from exc
            except ConnectionException as exc:
                self._drop_client()
                raise DeviceDisconnected(
                    device, f"{self.key} not connected: {exc}", address=address
                ) from exc
            except ModbusException as exc:
                raise ProtocolError(device, f"bad reply: {exc}", address=address) from exc
            except OSError as exc:
                self._drop_client()
                raise DeviceDisconnected(
                    device, f"{self.key}: {exc.strerror or exc}", address=address
                ) from exc
            except (ValueError, TypeError, IndexError, AttributeError, struct.error) as exc:
                # Whatever else the library trips over on a malformed exchange: the supervisor
                # gets a typed error, never a library exception.
                raise ProtocolError(
                    device, f"bad exchange: {type(exc).__name__}: {exc}", address=address
                ) from exc

    # ------------------------------------------------------------------ connection

    async def _connected_client(self, device: str, timeout_s: float) -> Client:
        if self._closed:
            raise DeviceDisconnected(device, f"{self.key} is closed")
        if self._client is not None and self._client.connected:
            return self._client
        self._drop_client()
        now = time.monotonic()
        if now < self._retry_at_s:
            raise DeviceDisconnected(
                device, f"{self.key} down, next attempt in {self._retry_at_s - now:.2f} s"
            )
        client = self._make_client()
        connect_timeout_s = max(timeout_s, CONNECT_TIMEOUT_MIN_S)
        ok = False
        reason = "refused or unreachable"
        try:
            async with asyncio.timeout(connect_timeout_s):
                ok = await client.connect()
        except TimeoutError:
            reason = f"no connection within {connect_timeout_s} s"
        except OSError as exc:
            reason = str(exc)
        if not ok:
            client.close()
            self._retry_at_s = time.monotonic() + self._backoff_s
            self._backoff_s = min(self._backoff_s * 2, BACKOFF_MAX_S)
            raise DeviceDisconnected(device, f"cannot open {self.key}: {reason}")
        self._client = client
        if isinstance(self.transport, RtuTransport):
            self._port_id = port_identity(self.transport.port)
        self._backoff_s = BACKOFF_MIN_S
        self.generation += 1
        return client

    def _make_client(self) -> Client:
        t = self.transport
        client: Client
        if isinstance(t, TcpTransport):
            client = AsyncModbusTcpClient(
                t.host,
                port=t.port,
                name=self.key,
                reconnect_delay=0,
                timeout=PYMODBUS_TIMEOUT_S,
                retries=0,
                trace_packet=self._trace_packet,
            )
        else:
            client = AsyncModbusSerialClient(
                t.port,
                framer=FramerType.RTU,
                baudrate=t.baudrate,
                parity=t.parity,
                stopbits=t.stopbits,
                name=self.key,
                reconnect_delay=0,
                timeout=PYMODBUS_TIMEOUT_S,
                retries=0,
                trace_packet=self._trace_packet,
            )
        client.set_max_no_responses(PYMODBUS_MAX_NO_RESPONSES)
        _guard_decoder(client)
        return client

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        if not sending and data:
            self._rx_seen = True
        if self._reply_wait is not None:
            if sending:
                self._reply_wait.sent(self._client, data)
            else:
                self._reply_wait.received(data)
        return data

    def _check_port_still_there(self) -> None:
        """A USB adapter that re-enumerated leaves our fd on a dead node: reopen, by path."""
        if (
            isinstance(self.transport, RtuTransport)
            and self._client is not None
            and port_identity(self.transport.port) != self._port_id
        ):
            log.warning("%s: serial port replaced or gone; reopening", self.key)
            self._drop_client()

    def _drop_client(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    async def aclose(self) -> None:
        self._closed = True
        self._drop_client()
        # The socket transport closes its fd in a callback of the next loop iteration.
        await asyncio.sleep(0)


def _check_function(device: str, address: int, pdu: ModbusPDU, fc: int) -> None:
    if pdu.isError():
        raise ModbusExceptionReply(device, int(pdu.exception_code), address=address)
    if pdu.function_code != fc:
        raise ProtocolError(
            device,
            f"reply has function code {pdu.function_code}, request had {fc}",
            address=address,
        )


def _guard_decoder(client: Client) -> None:
    """Fail the waiting request when a reply cannot be decoded, instead of letting it escape.

    pymodbus raises from its receive callback on an undecodable frame (unknown function code,
    byte count beyond the frame); asyncio would then close a TCP socket, or log and carry on for
    a serial port, while the request waits for its deadline.
    """
    ctx = client.ctx
    inner = ctx.callback_data

    def guarded(data: bytes, addr: tuple[Any, ...] | None = None) -> int:
        try:
            return inner(data, addr)
        except ModbusException as exc:
            fut = ctx.response_future
            if not fut.done():
                fut.set_exception(exc)
            return len(data)

    ctx.callback_data = guarded  # type: ignore[method-assign]
