"""The write side of a Modbus device: one point (FC5/FC6/FC16) or a map's block, read back.

A mixin of :class:`drivers._modbus_device.ModbusDevice`, which owns the connection, the decimal
points and the readings this side reads and updates (declared here for the type checker only).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from . import _codec
from ._errors import ModbusExceptionReply, WriteRefusedError, WriteVerifyError
from ._linesched import Priority, write_priority
from ._writes import write_multiple

if TYPE_CHECKING:
    from ._config import DeviceConfig, Point, RegisterMap
    from ._modbus import ModbusLine
    from ._reading import Reading

#: A write whose effect shows in another point is read back this often before it counts failed.
EFFECT_READS = 5
EFFECT_INTERVAL_S = 0.05


class WriteSide:
    if TYPE_CHECKING:
        name: str
        unit: int
        config: DeviceConfig
        regmap: RegisterMap
        _line: ModbusLine
        _dp: dict[str, int]
        _raw: dict[str, int]
        _readings: dict[str, Reading]

        def _dp_of(self, p: Point) -> int: ...
        def _tripped(self, exc: ModbusExceptionReply) -> ModbusExceptionReply: ...
        async def _read_block(self, block: _codec.Block) -> list[int]: ...
        def _judge(self, name: str, raw: int, ts: float) -> Reading: ...
        async def read_point(self, name: str) -> float | bool | None: ...

    def _z_now_mm(self) -> float | None:
        """The holder's last position read, to tell a withdrawal from a lowering."""
        r = self._readings.get("z_mm")
        return None if r is None else float_or_none(r.value)

    async def write(self, point: str, value: float | bool) -> None:
        p = self.regmap.points.get(point)
        if p is None:
            raise WriteRefusedError(self.name, f"no point {point!r} in map {self.regmap.name!r}")
        if not p.writable:
            raise WriteRefusedError(self.name, f"point {point!r} is read-only", address=p.address)
        if p.decimal_point and p.decimal_point not in self._dp:
            raise WriteRefusedError(
                self.name,
                f"{point!r}: decimal point {p.decimal_point!r} not read yet "
                "(the device has not been connected)",
                address=p.address,
            )
        if p.feed == "nonzero_change" and not isinstance(value, bool):
            # The device counts a change of a non-zero value: the counter skips 0.
            value = int(value) % _codec.UINT16_MAX + 1
        try:
            raw = _codec.encode(point, p, value, self._dp_of(p))
        except _codec.OutOfRange as exc:
            raise WriteRefusedError(self.name, str(exc), address=p.address) from exc
        try:
            priority = write_priority(self.config.kind, point, value, self._z_now_mm())
            await self._send(p, raw, priority)
        except ModbusExceptionReply as exc:
            raise self._tripped(exc) from exc
        if p.command or p.readback is False:
            return  # a pulse that clears itself, or a counter the device consumes: the echo is all
        if isinstance(p.readback, str):
            await self._verify_effect(point, p.readback, value)
            return
        p_block = _codec.Block(p.table, p.wire_read_address, p.width, ((point, 0),))
        readback = _codec.words_to_raw(p, await self._read_block(p_block))
        self._read_back(point, p, readback, time.monotonic())
        if readback != raw:
            raise WriteVerifyError(
                self.name,
                f"wrote {point} = {value!r} (raw {raw}) but read back {_shown(p, readback)} "
                f"(raw {readback})",
                address=p.address,
            )

    async def unconfirmed(self, values: Mapping[str, float | bool]) -> frozenset[str]:
        """The points of ``values`` that the device does not show at that value now.

        Read back in as few block reads as cover them (one per run of addresses), as each write
        is read back. Never confirmed: a point without a plain read-back (a command, a counter
        the device consumes, an effect shown in another point), one that cannot be encoded, or
        one whose scaling is not known yet. Raises a DeviceError when a block cannot be read.
        """
        wanted: dict[str, int] = {}
        unsure: set[str] = set()
        for point, value in values.items():
            p = self.regmap.points.get(point)
            plain = p is not None and p.writable and not p.command and p.readback is True
            if p is None or not plain or (p.decimal_point and p.decimal_point not in self._dp):
                unsure.add(point)
                continue
            try:
                wanted[point] = _codec.encode(point, p, value, self._dp_of(p))
            except _codec.OutOfRange:
                unsure.add(point)
        points = self.regmap.points
        for block in _codec.plan_blocks((n, points[n]) for n in wanted):
            words = await self._read_block(block)
            ts = time.monotonic()
            for name, offset in block.points:
                p = points[name]
                raw = _codec.words_to_raw(p, words[offset : offset + p.width])
                self._read_back(name, p, raw, ts)
                if raw != wanted[name]:
                    unsure.add(name)
        return frozenset(unsure)

    async def write_block(self, block: str, values: Mapping[str, float | bool]) -> None:
        """The points of a map's ``[blocks.NAME]`` in one FC16 (FC15) request, read back."""
        spec = self.regmap.blocks.get(block)
        if spec is None:
            raise WriteRefusedError(self.name, f"no block {block!r} in map {self.regmap.name!r}")
        if set(values) != set(spec.points):
            raise WriteRefusedError(
                self.name, f"block {block!r} needs exactly {', '.join(spec.points)}"
            )
        points = [self.regmap.points[n] for n in spec.points]
        words: list[int] = []
        raws: list[int] = []
        for name, p in zip(spec.points, points, strict=True):
            try:
                raw = _codec.encode(name, p, values[name], self._dp_of(p))
            except _codec.OutOfRange as exc:
                raise WriteRefusedError(self.name, str(exc), address=p.address) from exc
            raws.append(raw)
            words += [raw] if p.is_bit else _codec.raw_to_words(p, raw)
        first = points[0]
        try:
            await write_multiple(
                self._line,
                self.name,
                unit=self.unit,
                p=first,
                values=words,
                timeout_s=self.config.timeout_s,
            )
        except ModbusExceptionReply as exc:
            raise self._tripped(exc) from exc
        if not all(p.readback is True and p.read_address is None for p in points):
            return
        back = await self._read_block(
            _codec.Block(first.table, first.wire_read_address, len(words), ())
        )
        offset = 0
        for name, p, raw in zip(spec.points, points, raws, strict=True):
            got = _codec.words_to_raw(p, back[offset : offset + p.width])
            offset += p.width
            if got != raw:
                raise WriteVerifyError(
                    self.name,
                    f"block {block}: wrote {name} = {values[name]!r} (raw {raw}) but read back "
                    f"{_shown(p, got)} (raw {got})",
                    address=p.address,
                )

    def _read_back(self, name: str, p: Point, raw: int, ts: float) -> None:
        """A polled point read back after a write is a fresh reading of it, too."""
        if p.poll:
            self._raw[name] = raw
            self._readings[name] = self._judge(name, raw, ts)

    async def _verify_effect(self, point: str, shown_in: str, value: float | bool) -> None:
        """A write-only command whose effect shows in another point or bit."""
        found: float | bool | None = None
        for attempt in range(EFFECT_READS):
            if attempt:
                await asyncio.sleep(EFFECT_INTERVAL_S)
            found = await self.read_point(shown_in)
            if found == value:
                return
        raise WriteVerifyError(
            self.name,
            f"wrote {point} = {value!r} but {shown_in} shows {found!r} after "
            f"{EFFECT_READS * EFFECT_INTERVAL_S:g} s",
            address=self.regmap.points[point].address,
        )

    async def _send(self, p: Point, raw: int, priority: Priority) -> None:
        if not p.multiple:
            await self._line.write(
                self.name,
                self.unit,
                table=p.table,
                address=p.wire_address,
                raw=raw,
                timeout_s=self.config.timeout_s,
                priority=priority,
            )
            return
        words = [raw] if p.is_bit else _codec.raw_to_words(p, raw)
        await write_multiple(
            self._line,
            self.name,
            unit=self.unit,
            p=p,
            values=words,
            timeout_s=self.config.timeout_s,
            priority=priority,
        )



def _shown(p: Point, raw: int) -> str:
    try:
        return repr(_codec.decode(p, raw))
    except _codec.BadValue:
        return "an unknown code"


def float_or_none(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None
