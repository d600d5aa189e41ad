"""The Modbus device driver: temperature controller, remote I/O, holder drive — by register map."""

from __future__ import annotations

import logging
import time
from typing import Self

from . import _codec
from ._config import POLLS_PER_STALE, DeviceConfig, RegisterMap, RtuTransport, TcpTransport
from ._connect import LAYERS_OK, ConnectSide
from ._errors import (
    ConfigError,
    DeviceDisconnected,
    DeviceError,
    DeviceTimeout,
    ModbusExceptionReply,
    ProtocolError,
)
from ._health import Health, aged
from ._linerate import LineRate
from ._linesched import Priority, read_priority
from ._modbus import ModbusLine
from ._plausible import implausible
from ._reading import Quality, Reading
from ._writes import DeviceTripped
from ._writeside import WriteSide

#: Modbus exception codes by which a gateway says the device behind it did not answer.
GATEWAY_EXCEPTION_CODES = frozenset({0x0A, 0x0B})

log = logging.getLogger("drivers")


class ModbusDevice(WriteSide, ConnectSide):
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
        self._block_prio = [
            read_priority(config.kind, b.table, tuple(n for n, _ in b.points)) for b in self._blocks
        ]
        #: Polls so far and the measured time between them: a line short of time skips the
        #: non-safety blocks on all but every k-th poll (``drivers._linerate``).
        self._polls = 0
        self._poll_start_s = 0.0
        self._poll_interval_s = 0.0
        self._health = Health(name)
        self._setup = self._setup_writes(name, config, regmap)
        self._setup_generation = -1
        self._layers_due_s = 0.0
        self._write_setup = True
        #: Decimal points read at connect, by the name of the point that holds them.
        self._dp: dict[str, int] = {}
        self._dp_points = sorted(
            {p.decimal_point for p in regmap.points.values() if p.decimal_point is not None}
        )
        now = time.monotonic()
        # Never read yet: no value, NO_COMM, stamped with the driver's start. A point that is
        # not polled has no reading: its readback only verifies the write.
        self._raw: dict[str, int] = {}
        #: Why a BAD reading is bad (sentinel, implausible, unknown code), for the tools.
        self.why: dict[str, str] = {}
        polled = [n for n, p in regmap.points.items() if p.poll]
        self._readings: dict[str, Reading] = {
            n: Reading(None, now, Quality.NO_COMM) for n in (*polled, *regmap.bits)
        }
        self._invalidators: dict[str, list[str]] = {}
        for bname, bit in regmap.bits.items():
            for target in bit.invalidates:
                self._invalidators.setdefault(target, []).append(bname)
        if self._setup:
            self._readings[LAYERS_OK] = Reading(None, now, Quality.NO_COMM)

    @property
    def health(self) -> Health:
        return self._health

    def raw_of(self, name: str) -> int | None:
        """The last raw value of a point (a register pair as one unsigned int), or None."""
        return self._raw.get(name)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
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
            if self._setup_generation != self._line.generation:
                await self.connect_setup()
            if self._setup and time.monotonic() >= self._layers_due_s:
                await self.check_layers()
        except DeviceError as exc:
            self._fail_all(exc)
            return
        rate = self._line.scheduler.rate
        skip_k = self._skip_k(rate, started)
        for block, prio in zip(self._blocks, self._block_prio, strict=True):
            if prio is Priority.READ and skip_k > 1 and self._polls % skip_k:
                continue
            try:
                values = await self._read_block(block, prio)
            except DeviceError as exc:
                failure = failure or exc
                self._fail_block(block, exc)
                if not _answered(exc):
                    # The device is gone or garbling: asking for the other blocks now would only
                    # hold the line for more timeouts. They keep their last state until next time.
                    self._fail_rest(exc, started)
                    break
                continue
            done_s = time.monotonic()
            self._store_block(block, values, done_s)
            if prio is Priority.SAFETY_READ:
                need_hz = POLLS_PER_STALE / self.config.stale_s
                rate.safety_read(done_s, self.name, block.address, block.table, need_hz)
        if failure is None:
            self._health.succeeded()
            layers = self._readings.get(LAYERS_OK)
            if layers is not None and layers.value is not None:
                # A fact about the settings until the next read-back, as fresh as the link.
                self._readings[LAYERS_OK] = Reading(layers.value, time.monotonic())
        else:
            self._fail_health(failure)

    def _skip_k(self, rate: LineRate, now_s: float) -> int:
        """This poll's divider for the non-safety blocks (1: read them all)."""
        if self._poll_start_s:
            interval_s = now_s - self._poll_start_s
            self._poll_interval_s = (
                interval_s
                if not self._poll_interval_s
                else 0.8 * self._poll_interval_s + 0.2 * interval_s
            )
        self._poll_start_s = now_s
        self._polls += 1
        if rate.divider == 1:
            return 1
        return rate.skip_cap(self.config.stale_s, self._poll_interval_s, POLLS_PER_STALE)

    def _store_block(self, block: _codec.Block, values: list[int], ts: float) -> None:
        for name, offset in block.points:
            point = self.regmap.points[name]
            raw = _codec.words_to_raw(point, values[offset : offset + point.width])
            self._raw[name] = raw
            self._readings[name] = self._judge(name, raw, ts)
        self._decode_bits(ts)

    def _judge(self, name: str, raw: int, ts: float) -> Reading:
        """A raw value to a reading: GOOD with its value, or BAD (never a value) and why."""
        point = self.regmap.points[name]
        dp = self._dp.get(point.decimal_point, 0) if point.decimal_point else 0
        if point.decimal_point and point.decimal_point not in self._dp:
            why: str | None = f"decimal point {point.decimal_point!r} not read yet"
        else:
            try:
                value = _codec.decode(point, raw, dp)
            except _codec.BadValue as exc:
                why = str(exc)
            else:
                why = implausible(self.config.kind, name, point, raw, value)
                flagged = [
                    b for b in self._invalidators.get(name, ()) if self._readings[b].value is True
                ]
                if why is None and flagged:
                    why = flagged[0]
                if why is None:
                    self.why.pop(name, None)
                    return Reading(value, ts)
        assert why is not None
        if self.why.get(name) != why:
            log.warning("%s: %s is BAD: %s", self.name, name, why)
        self.why[name] = why
        return Reading(None, ts, Quality.BAD)

    def _fail_health(self, exc: DeviceError) -> None:
        self._health.failed(exc, backoff=not _answered(exc))
        if _quality_of(exc) is Quality.NO_COMM:
            # A unit that was away may have restarted with defaults: set it up again.
            self._setup_generation = -1

    async def _read_block(self, block: _codec.Block, priority: Priority | None = None) -> list[int]:
        """One block, retried at most ``config.retries`` times on no answer or a garbled one."""
        if priority is None:
            priority = read_priority(
                self.config.kind, block.table, tuple(n for n, _ in block.points)
            )
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
                    priority=priority,
                )
            except (DeviceTimeout, ProtocolError):
                # An exception reply is the device's considered answer and a lost link will not
                # come back within the poll: only silence and garbage are worth asking again.
                if attempt >= self.config.retries:
                    raise
                attempt += 1
            except ModbusExceptionReply as exc:
                raise self._tripped(exc) from exc

    def _tripped(self, exc: ModbusExceptionReply) -> ModbusExceptionReply:
        """The exception that a tripped watchdog answers with is the trip, shown as such."""
        wd = self.regmap.watchdog
        if wd is None or wd.trip_exception != exc.code or isinstance(exc, DeviceTripped):
            return exc
        if wd.tripped is not None and wd.tripped in self._readings:
            self._readings[wd.tripped] = Reading(True, time.monotonic())
        return DeviceTripped(self.name, exc.code, address=exc.address)

    def _decode_bits(self, ts: float) -> None:
        for name, bit in self.regmap.bits.items():
            word = self._readings[bit.word]
            if word.ts == ts and word.quality in (Quality.GOOD, Quality.BAD):
                # From the raw word just received, even if the word is no value (the code that
                # replaces a value is what says why).
                on = _codec.decode_bit(bit, self._raw[bit.word])
                self._readings[name] = Reading(on, ts)
                for target in bit.invalidates if on else ():
                    # An input error: the device's value is meaningless, whatever it reads.
                    self.why[target] = name
                    self._readings[target] = Reading(None, ts, Quality.BAD)
            elif word.ts == ts:
                self._readings[name] = Reading(None, ts, Quality.BAD)

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
