"""The O2 analyzer's serial line: an ASCII protocol with an XOR checksum (docs/hardware.md).

Every line is ``$<body>*<CC>\\r\\n`` where ``CC`` is the XOR of the bytes of ``<body>`` (between
``$`` and ``*``) as two upper-case hex digits. The analyzer sends ``$O2,<ppm>,<status>*CC`` every
update period, unasked; it takes ``$ZERO*CC`` (auto-zero) and ``$RATE,<ms>*CC`` (update period)
and answers ``$ACK,...*CC`` or ``$NAK,<reason>*CC``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from ._atmosphere import AnalyzerCell
from ._banks import RegisterBank
from ._pty import PtyLink

log = logging.getLogger(__name__)

RATE_MIN_MS = 100
RATE_MAX_MS = 10_000
#: Longest command line accepted; longer input without a line end is garbage.
MAX_LINE = 128
#: More unread bytes than this on the line means nobody reads it: drop them rather than let a
#: client that opens the port later read seconds-old values as new ones.
MAX_BACKLOG_BYTES = 64
STATUSES = ("OK", "ERR", "CAL")


class ChecksumError(ValueError):
    pass


def checksum(body: str) -> str:
    """XOR of the body's bytes, two upper-case hex digits."""
    x = 0
    for b in body.encode("ascii"):
        x ^= b
    return f"{x:02X}"


def frame(body: str) -> bytes:
    """A complete line: ``$body*CC\\r\\n``."""
    return f"${body}*{checksum(body)}\r\n".encode("ascii")


def parse(line: bytes | str) -> str:
    """The body of a line; ChecksumError if it is not ``$body*CC`` with a matching checksum."""
    text = line.decode("ascii", "replace") if isinstance(line, bytes) else line
    text = text.strip()
    if not text.startswith("$") or len(text) < 4 or text[-3] != "*":
        raise ChecksumError(f"not a $...*CC line: {text!r}")
    body, cc = text[1:-3], text[-2:]
    if checksum(body) != cc.upper():
        raise ChecksumError(f"checksum {cc} does not match {checksum(body)}")
    return body


def o2_line(ppm: float, status: str) -> bytes:
    """The periodic report: ppm with one decimal, then OK, ERR or CAL."""
    return frame(f"O2,{ppm:.1f},{status}")


def handle_command(body: str, cell: AnalyzerCell) -> str:
    """Run one command; returns the body of the answer."""
    parts = body.split(",")
    cmd = parts[0].upper()
    if cmd == "ZERO" and len(parts) == 1:
        cell.start_zero()
        return "ACK,ZERO"
    if cmd == "RATE" and len(parts) == 2:
        try:
            ms = int(parts[1])
        except ValueError:
            return "NAK,RATE,BADVAL"
        if not RATE_MIN_MS <= ms <= RATE_MAX_MS:
            return "NAK,RATE,RANGE"
        cell.period_ms = ms
        return f"ACK,RATE,{ms}"
    return f"NAK,{cmd or '?'},UNKNOWN"


def _command_name(line: bytes) -> str:
    """The command word of a line that failed its checksum, or ? if even that is unreadable."""
    word = line.lstrip(b"$").split(b"*")[0].split(b",")[0].decode("ascii", "replace").upper()
    return word if word.isalnum() and len(word) <= 16 else "?"


class AnalyzerServer:
    """Async context manager: the analyzer on a pty linked at ``path``.

    Sends one line per report of the cell (the physics decides when: whoever steps the physics
    calls ``after_step``), answers commands, and is silent while ``silent()`` says so
    (``o2_analyzer_silent``, ``device_offline``).
    """

    def __init__(
        self,
        path: Path,
        cell: AnalyzerCell,
        silent: Callable[[], bool],
        protocol: str = "generic",
    ) -> None:
        self.path = path
        self.cell = cell
        self.protocol = protocol
        #: OX400: packets flow only between TS and a bare CR; Teledyne: ``st`` toggles the
        #: status output, which is on at power-up.
        self._streaming = protocol != "ox400"
        self._silent = silent
        self._pty = PtyLink(path, self._on_data)
        self._buf = bytearray()
        self._seq = cell.report_seq

    async def __aenter__(self) -> AnalyzerServer:
        await self._pty.__aenter__()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._pty.__aexit__(et, e, tb)

    def _send(self, data: bytes) -> None:
        if self._pty.pending_to_client() > MAX_BACKLOG_BYTES:
            self._pty.drop_pending_to_client()
        self._pty.write(data)

    def after_step(self) -> None:
        """Send the cell's new report, if it made one since the last call."""
        if self.cell.report_seq != self._seq:
            self._seq = self.cell.report_seq
            if not self._silent():
                line = self._report_line()
                if line:
                    self._send(line)

    def _report_line(self) -> bytes:
        cell = self.cell
        if self.protocol == "ox400":
            if not self._streaming:
                return b""
            # IM 11M10B01-01E 6.3: AAAA.AAA,BBB,CCCC,DDDD CR. A cell fault sets an error bit
            # (which bit is the manual's Table 6.3; bit 0 here, unconfirmed).
            error = 0x0001 if cell.status == "ERR" else 0
            return f"{cell.reported_ppm:08.3f},ppm,{error:04X},0000\r".encode("ascii")
        if self.protocol == "teledyne3000":
            # 3.3.2.3: nothing is sent while zeroing or spanning; else the status line.
            if not self._streaming or cell.status == "CAL":
                return b""
            if cell.status == "ERR":
                return b""  # unconfirmed: a faulted cell is taken to fall silent
            return f"ST, {cell.reported_ppm:.2f} PPM, RA-LO 0-1000 PPM,\r\n".encode("ascii")
        return o2_line(cell.reported_ppm, cell.status)

    def _on_command_line(self, line: bytes) -> None:
        """OX400 and Teledyne: bare commands ended by CR, never answered on the line."""
        word = line.strip().lower()
        if self.protocol == "ox400":
            if word == b"ts":
                self._streaming = True
            elif word == b"":
                self._streaming = False
            return
        if word == b"az":
            self.cell.start_zero()
        elif word == b"st":
            self._streaming = not self._streaming
        # "as" (autospan) needs span gas, which the booth has not: ignored.

    def _on_data(self, data: bytes) -> None:
        self._buf += data
        if self.protocol != "generic":
            while (end := self._buf.find(b"\r")) >= 0:
                line = bytes(self._buf[:end]).replace(b"\n", b"")
                del self._buf[: end + 1]
                if not self._silent():
                    self._on_command_line(line)
            if len(self._buf) > MAX_LINE:
                self._buf.clear()
            return
        while True:
            end = self._buf.find(b"\n")
            if end < 0:
                if len(self._buf) > MAX_LINE:
                    self._buf.clear()
                return
            line = bytes(self._buf[:end]).strip()
            del self._buf[: end + 1]
            if not line or self._silent():
                continue
            try:
                body = parse(line)
            except ChecksumError:
                self._send(frame(f"NAK,{_command_name(line)},CHECKSUM"))
                continue
            answer = handle_command(body, self.cell)
            log.info("analyzer: %s -> %s", body, answer)
            self._send(frame(answer))


#: The Modbus analyzer's ceiling (config/maps/o2-modbus-generic.toml: 1 ppm per count).
MODBUS_PPM_MAX = 65535


class ModbusAnalyzer:
    """The analyzer cell behind a Modbus register map (``o2-modbus-generic``): each report of the
    cell updates the registers and the measurement counter; a write of the ``zero`` coil starts
    an auto-zero. Its silence (``o2_analyzer_silent``) is the line's: the server does not answer.
    """

    def __init__(self, bank: RegisterBank, cell: AnalyzerCell) -> None:
        self.bank = bank
        self.cell = cell
        self._seq = -1
        bank.hook_write("zero", self._zero)

    def _zero(self, _address: int, raw: int) -> int:
        if raw:
            self.cell.start_zero()
        return 0  # a command coil: it reads back 0

    def after_step(self) -> None:
        cell = self.cell
        if cell.report_seq == self._seq:
            return
        self._seq = cell.report_seq
        over = cell.reported_ppm > MODBUS_PPM_MAX
        self.bank.set("ppm", min(round(cell.reported_ppm), MODBUS_PPM_MAX))
        self.bank.set("status_ok", cell.status == "OK" and not over)
        self.bank.set("calibrating", cell.status == "CAL")
        self.bank.set("over_range", over)
        self.bank.set("sample_seq", cell.report_seq & 0xFFFF)
