"""The O2 analyzer driver: a reader task keeps the latest line; poll hands it out.

The serial port is opened by path and reopened with backoff when it fails, or when the path comes
to point at another device node (a USB adapter that re-enumerated).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from typing import Any, Self

import serial
import serial_asyncio_fast

from . import _o2ascii, _o2proto
from ._config import DeviceConfig, SerialTransport
from ._errors import (
    ConfigError,
    DeviceDisconnected,
    DeviceError,
    DeviceTimeout,
    ProtocolError,
    WriteRefusedError,
)
from ._health import BACKOFF_MAX_S, BACKOFF_MIN_S, Health, aged
from ._ports import port_identity
from ._reading import Quality, Reading

log = logging.getLogger("drivers")

READ_CHUNK_BYTES = 256
#: A command's ACK may wait for the analyzer's next status line; never less than this.
ACK_TIMEOUT_MIN_S = 0.5
#: Silence this long makes the reader check that the port path still names the open device.
SILENCE_CHECK_MIN_S = 1.0
#: Closing a serial port normally takes one loop iteration; never wait for it longer than this.
CLOSE_TIMEOUT_S = 1.0
#: Garbled lines are logged at most this often (with the count since), not one by one.
BAD_LINE_LOG_INTERVAL_S = 60.0

POINTS = ("ppm", "status_ok")
COMMANDS = {"zero": "ZERO"}


class O2Analyzer:
    """Zirconia O2 analyzer on an ASCII serial line: points ``ppm`` and ``status_ok``."""

    def __init__(self, name: str, config: DeviceConfig) -> None:
        if not isinstance(config.transport, SerialTransport):
            raise ConfigError(f"devices.{name}: the o2_analyzer needs a serial transport")
        self.name = name
        self.config = config
        self.port = config.transport.port
        self.baudrate = config.transport.baudrate
        self.protocol = config.transport.protocol
        #: Lines received that failed framing, checksum or content.
        self.bad_lines = 0
        self.good_lines = 0
        self._health = Health(name)
        now = time.monotonic()
        self._readings = {p: Reading(None, now, Quality.NO_COMM) for p in POINTS}
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self._pending: tuple[str, asyncio.Future[_o2proto.Reply]] | None = None
        self._command_lock = asyncio.Lock()
        self._bad_logged_at_s = -BAD_LINE_LOG_INTERVAL_S
        self._bad_since_log = 0

    @property
    def health(self) -> Health:
        return self._health

    @property
    def connected(self) -> bool:
        return self._writer is not None

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._run(), name=f"o2-reader:{self.name}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    # ------------------------------------------------------------------ supervisor API

    async def poll(self) -> dict[str, Reading]:
        now = time.monotonic()
        return {n: aged(r, now, self.config.stale_s) for n, r in self._readings.items()}

    async def unconfirmed(self, values: Mapping[str, float | bool]) -> frozenset[str]:
        """Its points are commands, sent and acknowledged: none is read back."""
        return frozenset(values)

    async def write(self, point: str, value: float | bool) -> None:
        command = COMMANDS.get(point)
        if command is not None and self.protocol != "generic":
            await self._write_unacknowledged(point, value)
            return
        if command is None:
            raise WriteRefusedError(
                self.name, f"no writable point {point!r} (only {', '.join(COMMANDS)})"
            )
        if value is not True and value != 1:
            raise WriteRefusedError(self.name, f"{point} is a command: write True to send it")
        timeout_s = max(self.config.timeout_s, ACK_TIMEOUT_MIN_S)
        async with self._command_lock:
            writer = self._writer
            if writer is None:
                raise DeviceDisconnected(self.name, f"{self.port} is not open")
            fut: asyncio.Future[_o2proto.Reply] = asyncio.get_running_loop().create_future()
            self._pending = (command, fut)
            try:
                writer.write(_o2proto.frame(command))
                async with asyncio.timeout(timeout_s):
                    reply = await fut
            except TimeoutError as exc:
                raise DeviceTimeout(
                    self.name, f"no $ACK,{command} within {timeout_s} s on {self.port}"
                ) from exc
            finally:
                self._pending = None
        if not reply.accepted:
            raise ProtocolError(self.name, f"analyzer refused {command}: {reply.reason or 'NAK'}")

    async def _write_unacknowledged(self, point: str, value: float | bool) -> None:
        """A real analyzer's command: sent, never acknowledged on the line (its manual says so);
        its effect shows in the readings (a Teledyne reports the CAL range while zeroing)."""
        if value is not True and value != 1:
            raise WriteRefusedError(self.name, f"{point} is a command: write True to send it")
        if self.protocol != "teledyne3000":
            raise WriteRefusedError(
                self.name, f"{point}: the {self.protocol} analyzer has no such command on its line"
            )
        writer = self._writer
        if writer is None:
            raise DeviceDisconnected(self.name, f"{self.port} is not open")
        writer.write(_o2ascii.TELEDYNE_AUTOZERO)

    # ------------------------------------------------------------------ reader task

    async def _run(self) -> None:
        backoff_s = BACKOFF_MIN_S
        while True:
            try:
                reader, writer, port_id = await self._open()
            except DeviceDisconnected as exc:
                self._lost(exc)
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, BACKOFF_MAX_S)
                continue
            backoff_s = BACKOFF_MIN_S
            self._writer = writer
            if self.protocol == "ox400":
                # The OX400 sends its packets only after TS (IM 11M10B01-01E 6.3).
                writer.write(_o2ascii.OX400_START)
            try:
                reason = await self._read_lines(reader, port_id)
            except Exception as exc:
                # The reader must outlive anything the line or the library throws at it: the
                # port is closed and reopened, and the readings say NO_COMM meanwhile.
                log.exception("%s: reader failed; reopening %s", self.name, self.port)
                reason = f"reader failed: {type(exc).__name__}: {exc}"
                await asyncio.sleep(backoff_s)
            finally:
                self._writer = None
                await _close(writer)
            self._lost(DeviceDisconnected(self.name, reason))

    async def _open(
        self,
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, tuple[int, int, int] | None]:
        port_id = port_identity(self.port)
        try:
            ser: Any = serial.serial_for_url(
                self.port, baudrate=self.baudrate, exclusive=True, timeout=0
            )
        except (serial.SerialException, OSError, ValueError) as exc:
            raise DeviceDisconnected(self.name, f"cannot open {self.port}: {exc}") from exc
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=4 * _o2proto.MAX_LINE_BYTES)
        protocol = asyncio.StreamReaderProtocol(reader)
        try:
            transport, _ = await serial_asyncio_fast.connection_for_serial(
                loop, lambda: protocol, ser
            )
        except BaseException as exc:
            ser.close()
            if isinstance(exc, Exception):
                raise DeviceDisconnected(self.name, f"cannot use {self.port}: {exc}") from exc
            raise
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        return reader, writer, port_id

    async def _read_lines(
        self, reader: asyncio.StreamReader, port_id: tuple[int, int, int] | None
    ) -> str:
        """Read until the port fails or is replaced; the reason is returned."""
        silence_s = max(2 * self.config.stale_s, SILENCE_CHECK_MIN_S)
        buf = b""
        #: When the first byte of the line in ``buf`` arrived: a reading is stamped then, not
        #: when its last byte came (a 40-byte line at 2400 baud takes 0.17 s on the wire).
        buf_ts = time.monotonic()
        while True:
            try:
                async with asyncio.timeout(silence_s):
                    chunk = await reader.read(READ_CHUNK_BYTES)
            except TimeoutError:
                if port_identity(self.port) != port_id:
                    return f"{self.port} replaced or gone"
                if self.protocol == "ox400" and self._writer is not None:
                    # An OX400 that restarted waits for TS again (IM 11M10B01-01E 6.3).
                    self._writer.write(_o2ascii.OX400_START)
                continue
            except OSError as exc:
                return f"{self.port}: {exc}"
            if not chunk:
                return f"{self.port}: end of file"
            chunk_ts = time.monotonic()
            if not buf:
                buf_ts = chunk_ts
            buf += chunk
            *lines, buf = self._split(buf)
            if len(buf) > _o2proto.MAX_LINE_BYTES:
                lines.append(buf)
                buf = b""
            for i, line in enumerate(lines):
                if line.strip(b"\r"):
                    # The first line began in an earlier chunk; the others in this one.
                    self._on_line(line, buf_ts if i == 0 else chunk_ts)
            if lines:
                buf_ts = chunk_ts

    def _split(self, buf: bytes) -> list[bytes]:
        """Lines end with LF (generic, Teledyne CR LF) or with a bare CR (the OX400)."""
        if self.protocol == "ox400":
            return buf.replace(b"\n", b"").split(b"\r")
        return buf.split(b"\n")

    def _parse(self, line: bytes) -> _o2proto.Measurement | _o2proto.Reply:
        if self.protocol == "ox400":
            return _o2ascii.parse_ox400(line)
        if self.protocol == "teledyne3000":
            return _o2ascii.parse_teledyne3000(line)
        return _o2proto.parse_line(line)

    def _on_line(self, line: bytes, ts: float) -> None:
        try:
            msg = self._parse(line)
        except _o2proto.LineError as exc:
            self._bad_line(exc)
            return
        if isinstance(msg, _o2proto.Reply):
            pending = self._pending
            if pending is not None and pending[0] == msg.command and not pending[1].done():
                pending[1].set_result(msg)
            return
        self.good_lines += 1
        # ERR or CAL: the analyzer says its own value is not a measurement of the booth.
        self._readings["ppm"] = Reading(msg.ppm, ts, Quality.GOOD if msg.ok else Quality.BAD)
        self._readings["status_ok"] = Reading(msg.ok, ts)
        self._health.succeeded()

    def _bad_line(self, exc: _o2proto.LineError) -> None:
        self.bad_lines += 1
        self._bad_since_log += 1
        for name, r in self._readings.items():
            self._readings[name] = Reading(r.value, r.ts, Quality.BAD)
        now = time.monotonic()
        if now - self._bad_logged_at_s >= BAD_LINE_LOG_INTERVAL_S:
            log.warning(
                "%s: %d garbled line(s) since last report, latest: %s",
                self.name,
                self._bad_since_log,
                exc,
            )
            self._bad_logged_at_s = now
            self._bad_since_log = 0

    def _lost(self, exc: DeviceError) -> None:
        for name, r in self._readings.items():
            self._readings[name] = Reading(r.value, r.ts, Quality.NO_COMM)
        if self._pending is not None and not self._pending[1].done():
            self._pending[1].set_exception(exc)
        self._health.failed(exc, backoff=False)


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError, serial.SerialException, TimeoutError):
        async with asyncio.timeout(CLOSE_TIMEOUT_S):
            await writer.wait_closed()
