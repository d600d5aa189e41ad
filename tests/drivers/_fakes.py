"""Modbus and serial counterparts for the driver tests: well-behaved and hostile.

``Bank`` answers Modbus PDUs from in-memory tables, or misbehaves as its unit's ``mode`` says.
``HostileTcpServer`` serves banks over Modbus TCP; ``PtyRtuServer`` over Modbus RTU on a
pseudo-terminal (the driver opens a link to its slave side, as it would a USB adapter);
``PtyLine`` is a bare pseudo-terminal for ASCII lines (the O2 analyzer). ``load_devices`` reads
the devices and maps of a booth config file.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
import tomllib
import tty
from pathlib import Path

from pymodbus.framer import FramerRTU

from drivers import DeviceConfig, RegisterMap, load_register_map
from tests._util import CONFIG_DIR

TABLE_SIZE = 32
READ_FC = {1: "coil", 2: "discrete", 3: "holding", 4: "input"}

#: Modes of a unit: how it answers.
MODES = (
    "ok",
    "silent",  # never answers
    "exception",  # exception reply with Bank.exception_code
    "wrong_fc",  # answers with another function code
    "short",  # one register or bit byte fewer than asked
    "odd_byte_count",  # registers with their last byte missing
    "byte_count_beyond",  # a byte count beyond the frame
    "wrong_unit",  # answers as another unit
    "truncated",  # sends half of the reply and nothing more
    "garbage",  # bytes that are no frame at all
    "bad_crc",  # RTU: a right reply with a wrong CRC
    "wrong_tid",  # TCP: a right reply for another transaction
    "ignore_writes",  # acknowledges writes but keeps the old value
)

#: The shipped generic maps the driver tests run on.
TC_MAP = load_register_map(CONFIG_DIR / "maps" / "tc-generic.toml")
IO_MAP = load_register_map(CONFIG_DIR / "maps" / "io-generic.toml")
HOLDER_MAP = load_register_map(CONFIG_DIR / "maps" / "holder-generic.toml")


class Bank:
    """One unit's tables and behaviour."""

    def __init__(self) -> None:
        self.tables: dict[str, list[int]] = {
            t: [0] * TABLE_SIZE for t in ("coil", "discrete", "holding", "input")
        }
        self.mode = "ok"
        self.exception_code = 2
        self.requests = 0

    def answer(self, pdu: bytes) -> bytes:
        """The reply PDU to a request PDU, honest (or as honest as the mode allows)."""
        fc = pdu[0]
        if self.mode == "exception":
            return bytes([fc | 0x80, self.exception_code])
        if fc in READ_FC:
            address, count = struct.unpack(">HH", pdu[1:5])
            table = self.tables[READ_FC[fc]]
            if address + count > len(table):
                return bytes([fc | 0x80, 2])
            values = table[address : address + count]
            if fc in (1, 2):
                data = bytearray((count + 7) // 8)
                for i, v in enumerate(values):
                    if v:
                        data[i // 8] |= 1 << (i % 8)
                if self.mode == "short":
                    data = data[:-1] if len(data) > 1 else bytearray()
                body = bytes(data)
            else:
                if self.mode == "short":
                    values = values[:-1]
                body = b"".join(struct.pack(">H", v & 0xFFFF) for v in values)
            count_byte = len(body)
            if self.mode == "odd_byte_count" and fc in (3, 4):
                body = body[:-1]
                count_byte = len(body)
            if self.mode == "byte_count_beyond":
                count_byte = len(body) + 10
            out_fc = fc
            if self.mode == "wrong_fc":
                out_fc = 4 if fc == 3 else 3
            return bytes([out_fc, count_byte]) + body
        if fc in (5, 6):
            address, value = struct.unpack(">HH", pdu[1:5])
            table = self.tables["coil" if fc == 5 else "holding"]
            if address >= len(table):
                return bytes([fc | 0x80, 2])
            if self.mode != "ignore_writes":
                table[address] = (1 if value == 0xFF00 else 0) if fc == 5 else value
            return pdu[:5]
        return bytes([fc | 0x80, 1])


class HostileTcpServer:
    """Modbus TCP on loopback, serving ``banks`` by unit id; unknown units stay silent."""

    def __init__(self, banks: dict[int, Bank], port: int = 0) -> None:
        self.banks = banks
        self.port = port
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Close the listener and every connection: as if the device were switched off."""
        if self._server is not None:
            self._server.close()
        for w in list(self._writers):
            w.close()
        # Closed connections end their handlers (end of file); cancelling them instead would
        # upset the stream protocol's completion callback.
        await asyncio.gather(*self._tasks)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> HostileTcpServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        try:
            while True:
                header = await reader.readexactly(7)
                tid, _pid, length, unit = struct.unpack(">HHHB", header)
                pdu = await reader.readexactly(length - 1)
                frame = self.respond(tid, unit, pdu)
                if frame is not None:
                    writer.write(frame)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            self._tasks.discard(task)
            writer.close()

    def respond(self, tid: int, unit: int, pdu: bytes) -> bytes | None:
        """The reply frame to one request (as the unit's mode has it), or None for silence."""
        bank = self.banks.get(unit)
        if bank is not None:
            bank.requests += 1
        if bank is None or bank.mode == "silent":
            return None
        reply = bank.answer(pdu)
        if bank.mode == "wrong_unit":
            unit = (unit % 200) + 1
        if bank.mode == "wrong_tid":
            tid = (tid + 7) & 0xFFFF
        frame = struct.pack(">HHHB", tid, 0, len(reply) + 1, unit) + reply
        if bank.mode == "truncated":
            return frame[: len(frame) // 2]
        if bank.mode == "garbage":
            return b"\xde\xad\xbe\xef" * 5
        return frame


class PtyLine:
    """A pseudo-terminal whose slave side appears at ``link`` (a symlink, as udev makes).

    ``vanish()`` closes it and removes the link (the adapter unplugged); ``appear()`` makes a new
    one behind the same link (plugged back in: a different device node).
    """

    def __init__(self, link: Path) -> None:
        self.link = link
        self.master: int | None = None
        self.slave: int | None = None

    def appear(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        self.master, self.slave = master, slave
        with contextlib.suppress(FileNotFoundError):
            self.link.unlink()
        self.link.symlink_to(os.ttyname(slave))
        asyncio.get_running_loop().add_reader(master, self._readable)

    def vanish(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.link.unlink()
        if self.master is not None:
            asyncio.get_running_loop().remove_reader(self.master)
            os.close(self.master)
            self.master = None
        if self.slave is not None:
            os.close(self.slave)
            self.slave = None

    def send(self, data: bytes) -> None:
        assert self.master is not None
        os.write(self.master, data)

    def _readable(self) -> None:
        assert self.master is not None
        try:
            data = os.read(self.master, 4096)
        except OSError:
            return
        self.received(data)

    def received(self, data: bytes) -> None:
        """Bytes the driver sent; a subclass answers them."""

    async def __aenter__(self) -> PtyLine:
        self.appear()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.vanish()


class PtyRtuServer(PtyLine):
    """Modbus RTU units on one pseudo-terminal line: an RS-485 bus with its slaves."""

    def __init__(self, link: Path, banks: dict[int, Bank]) -> None:
        super().__init__(link)
        self.banks = banks
        self._buf = b""

    def received(self, data: bytes) -> None:
        self._buf += data
        # Every request the driver sends is 8 bytes (FC 1-6), which makes framing trivial here.
        while len(self._buf) >= 8:
            frame, self._buf = self._buf[:8], self._buf[8:]
            unit = frame[0]
            crc = (frame[6] << 8) | frame[7]
            if not FramerRTU.check_CRC(frame[:6], crc):
                continue
            bank = self.banks.get(unit)
            if bank is not None:
                bank.requests += 1
            if bank is None or bank.mode == "silent":
                continue
            reply = bank.answer(frame[1:6])
            if bank.mode == "wrong_unit":
                unit = (unit % 200) + 1
            adu = bytes([unit]) + reply
            out = adu + FramerRTU.compute_CRC(adu).to_bytes(2, "big")
            if bank.mode == "bad_crc":
                out = out[:-1] + bytes([out[-1] ^ 0xFF])
            elif bank.mode == "truncated":
                out = out[: len(out) // 2]
            elif bank.mode == "garbage":
                out = b"\xde\xad\xbe\xef" * 5
            self.send(out)


def load_devices(path: Path) -> tuple[dict[str, DeviceConfig], dict[str, RegisterMap]]:
    """The devices and maps of a booth config, as the supervisor reads them."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    devices = {n: DeviceConfig.model_validate(d) for n, d in data["devices"].items()}
    maps = {
        n: load_register_map(path.parent / d.map) for n, d in devices.items() if d.map is not None
    }
    for d in devices.values():
        tr = d.transport
        if tr.type != "tcp" and not Path(tr.port).is_absolute():
            raise AssertionError(f"{tr.port} should be absolute in a rendered config")
    return devices, maps
