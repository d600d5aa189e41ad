"""The Modbus device driver: temperature controller, remote I/O, holder drive — by register map."""

from __future__ import annotations

import time
from types import TracebackType
from typing import Self

from . import _codec
from ._config import DeviceConfig, RegisterMap, RtuTransport, TcpTransport
from ._errors import (
    ConfigError,
    DeviceDisconnected,
    DeviceError,
    DeviceTimeout,
    ModbusExceptionReply,
    ProtocolError,
    WriteRefusedError,
    WriteVerifyError,
)
from ._health import Health, aged
from ._linesched import read_priority, write_priority
from ._modbus import ModbusLine
from ._reading import Quality, Reading

#: Modbus exception codes by which a gateway says the device behind it did not answer.
GATEWAY_EXCEPTION_CODES = frozenset({0x0A, 0x0B})

#: Set-up written on every (re)connect: device kind -> (config field, map point).
SETUP_POINTS = {
    "temp_controller": ("comm_timeout_s", "comm_timeout_s"),
    "holder_drive": ("comm_timeout_s", "comm_timeout_s"),
    "remote_io": ("watchdog_ms", "watchdog_timeout_ms"),
}


class ModbusDevice:
    """A Modbus device whose points and bits come from its register map."""

    def __init__(
        self,
        name: str,
        config: DeviceConfig,
        regmap: RegisterMap,
        line: ModbusLine,
        *,
        owns_line: bool,
    ) -> None:
        if not isinstance(config.transport, TcpTransport | RtuTransport):
            raise ConfigError(f"devices.{name}: a {config.kind} needs a Modbus transport")
        self.name = name
        self.config = config
        self.regmap = regmap
        self.unit = config.transport.unit
        self._line = line
        self._owns_line = owns_line
        self._blocks = _codec.plan_reads(regmap)
        self._health = Health(name)
        self._setup = self._setup_writes(name, config, regmap)
        self._setup_generation = -1
        now = time.monotonic()
        # Never read yet: no value, NO_COMM, stamped with the driver's start. A point that is
        # not polled has no reading: its readback only verifies the write.
        self._raw: dict[str, int] = {}
        polled = [n for n, p in regmap.points.items() if p.poll]
        self._readings: dict[str, Reading] = {
            n: Reading(None, now, Quality.NO_COMM) for n in (*polled, *regmap.bits)
        }

    @staticmethod
    def _setup_writes(
        name: str, config: DeviceConfig, regmap: RegisterMap
    ) -> list[tuple[str, float]]:
        spec = SETUP_POINTS.get(config.kind)
        if spec is None:
            return []
        field, point = spec
        value = getattr(config, field)
        if value is None:
            return []
        if point not in regmap.points or not regmap.points[point].writable:
            raise ConfigError(
                f"devices.{name}.{field}: map {regmap.name!r} has no writable point {point!r}"
            )
        return [(point, float(value))]

    @property
    def health(self) -> Health:
        return self._health

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._owns_line:
            await self._line.aclose()

    # ------------------------------------------------------------------ poll

    async def poll(self) -> dict[str, Reading]:
        now = time.monotonic()
        if self._health.due(now):
            await self._poll_once()
        return self._current(time.monotonic())

    async def _poll_once(self) -> None:
        failure: DeviceError | None = None
        started = time.monotonic()
        try:
            if self._setup and self._setup_generation != self._line.generation:
                await self._send_setup()
        except DeviceError as exc:
            self._fail_all(exc)
            return
        for block in self._blocks:
            try:
                values = await self._read_block(block)
            except DeviceError as exc:
                failure = failure or exc
                self._fail_block(block, exc)
                if not _answered(exc):
                    # The device is gone or garbling: asking for the other blocks now would only
                    # hold the line for more timeouts. They keep their last state until next time.
                    self._fail_rest(exc, started)
                    break
                continue
            ts = time.monotonic()
            for name, offset in block.points:
                raw = values[offset]
                self._raw[name] = raw
                point = self.regmap.points[name]
                self._readings[name] = Reading(_codec.decode(point, raw), ts)
            self._decode_bits(ts)
        if failure is None:
            self._health.succeeded()
        else:
            self._fail_health(failure)

    def _fail_health(self, exc: DeviceError) -> None:
        self._health.failed(exc, backoff=not _answered(exc))
        if _quality_of(exc) is Quality.NO_COMM:
            # A unit that was away may have restarted with defaults: set it up again.
            self._setup_generation = -1

    async def _send_setup(self) -> None:
        for point, value in self._setup:
            await self.write(point, value)
        self._setup_generation = self._line.generation

    async def _read_block(self, block: _codec.Block) -> list[int]:
        """One block, retried at most ``config.retries`` times on no answer or a garbled one."""
        attempt = 0
        while True:
            try:
                return await self._line.read(
                    self.name,
                    self.unit,
                    table=block.table,
                    address=block.address,
                    count=block.count,
                    timeout_s=self.config.timeout_s,
                    priority=read_priority(
                        self.config.kind, block.table, tuple(n for n, _ in block.points)
                    ),
                )
            except (DeviceTimeout, ProtocolError):
                # An exception reply is the device's considered answer and a lost link will not
                # come back within the poll: only silence and garbage are worth asking again.
                if attempt >= self.config.retries:
                    raise
                attempt += 1

    def _decode_bits(self, ts: float) -> None:
        for name, bit in self.regmap.bits.items():
            word = self._readings[bit.word]
            if word.ts == ts and word.quality is Quality.GOOD:
                self._readings[name] = Reading(_codec.decode_bit(bit, self._raw[bit.word]), ts)

    def _fail_block(self, block: _codec.Block, exc: DeviceError) -> None:
        names = {n for n, _ in block.points}
        quality = _quality_of(exc)
        for name in names:
            self._degrade(name, quality)
        for name, bit in self.regmap.bits.items():
            if bit.word in names:
                self._degrade(name, quality)

    def _fail_rest(self, exc: DeviceError, started: float) -> None:
        """Points not refreshed by this poll take the failure's quality."""
        quality = _quality_of(exc)
        for name, r in self._readings.items():
            if r.ts < started:
                self._degrade(name, quality)

    def _fail_all(self, exc: DeviceError) -> None:
        quality = _quality_of(exc)
        for name in self._readings:
            self._degrade(name, quality)
        self._fail_health(exc)

    def _degrade(self, name: str, quality: Quality) -> None:
        r = self._readings[name]
        self._readings[name] = Reading(r.value, r.ts, quality)

    def _current(self, now: float) -> dict[str, Reading]:
        return {n: aged(r, now, self.config.stale_s) for n, r in self._readings.items()}

    # ------------------------------------------------------------------ write

    def _z_now_mm(self) -> float | None:
        """The holder's last position read, to tell a withdrawal from a lowering."""
        r = self._readings.get("z_mm")
        return None if r is None else _float_or_none(r.value)

    async def write(self, point: str, value: float | bool) -> None:
        p = self.regmap.points.get(point)
        if p is None:
            raise WriteRefusedError(self.name, f"no point {point!r} in map {self.regmap.name!r}")
        if not p.writable:
            raise WriteRefusedError(self.name, f"point {point!r} is read-only", address=p.address)
        try:
            raw = _codec.encode(point, p, value)
        except _codec.OutOfRange as exc:
            raise WriteRefusedError(self.name, str(exc), address=p.address) from exc
        await self._line.write(
            self.name,
            self.unit,
            table=p.table,
            address=p.address,
            raw=raw,
            timeout_s=self.config.timeout_s,
            priority=write_priority(self.config.kind, point, value, self._z_now_mm()),
        )
        if p.command or not p.readback:
            return  # a pulse that clears itself, or a counter the device consumes: the echo is all
        block = _codec.Block(p.table, p.address, 1, ((point, 0),))
        readback = (await self._read_block(block))[0]
        if p.poll:
            self._raw[point] = readback
            self._readings[point] = Reading(_codec.decode(p, readback), time.monotonic())
        if readback != raw:
            raise WriteVerifyError(
                self.name,
                f"wrote {point} = {value!r} (raw {raw}) but read back "
                f"{_codec.decode(p, readback)!r} (raw {readback})",
                address=p.address,
            )


def _float_or_none(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _quality_of(exc: DeviceError) -> Quality:
    """No answer at all is NO_COMM; an answer that cannot be used is BAD.

    A gateway's "path unavailable" or "target failed to respond" is the device not answering,
    reported by the gateway in front of it.
    """
    if isinstance(exc, DeviceTimeout | DeviceDisconnected):
        return Quality.NO_COMM
    if isinstance(exc, ModbusExceptionReply) and exc.code in GATEWAY_EXCEPTION_CODES:
        return Quality.NO_COMM
    return Quality.BAD


def _answered(exc: DeviceError) -> bool:
    """The device itself gave a considered answer (an exception reply of its own)."""
    return isinstance(exc, ModbusExceptionReply) and exc.code not in GATEWAY_EXCEPTION_CODES
