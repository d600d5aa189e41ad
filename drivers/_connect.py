"""A Modbus device's connection side: decimal points, set-up, and its own safety layers read back.

Separate from the poll and write paths (``_modbus_device``) because it changes for another
reason: what a device needs at connect, and how the booth checks the device's own watchdog or
comm-loss timeout (CONTRACT s.4) while it runs.
"""

from __future__ import annotations

import logging
import time

from . import _codec
from ._config import DeviceConfig, Point, RegisterMap
from ._errors import ConfigError, ModbusExceptionReply, ProtocolError
from ._modbus import ModbusLine
from ._reading import Reading
from ._safety_points import SETUP_POINTS

log = logging.getLogger("drivers")

#: The independent layers' settings are read back this often (and at every connect): a unit
#: swapped or reset to defaults by hand must not go unseen while the booth runs.
LAYERS_CHECK_S = 60.0
#: The reading that says the device's own safety settings read back as the config wants them.
LAYERS_OK = "layers_ok"
#: Exception codes of a model that locks or lacks an optional set-up register.
LOCKED_CODES = frozenset({0x02, 0x03})


class ConnectSide:
    """Mixed into ModbusDevice: the attributes below are its."""

    name: str
    config: DeviceConfig
    regmap: RegisterMap
    _line: ModbusLine
    _setup: list[tuple[str, float]]
    _setup_generation: int
    _layers_due_s: float
    _write_setup: bool
    _dp: dict[str, int]
    _dp_points: list[str]
    _readings: dict[str, Reading]

    async def write(self, point: str, value: float | bool) -> None:
        raise NotImplementedError

    async def _read_block(self, block: _codec.Block) -> list[int]:
        raise NotImplementedError

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

    async def connect_setup(self) -> None:
        """Everything a (re)connect needs: decimal points read, the map's set-up and the
        config's safety settings written (each read back)."""
        await self.read_decimal_points()
        if not self._write_setup:
            # The first request opened the link: count this generation as set up.
            self._setup_generation = self._line.generation
            return
        for step in self.regmap.setup:
            try:
                await self.write(step.point, step.value)
            except ModbusExceptionReply as exc:
                if not (step.optional and exc.code in LOCKED_CODES):
                    raise
                log.info(
                    "%s: optional set-up %s refused (%s): left as it is", self.name, step.point, exc
                )
        for point, value in self._setup:
            await self.write(point, value)
        self._setup_generation = self._line.generation
        self._layers_due_s = 0.0

    async def read_decimal_points(self) -> None:
        """Read the registers that give other points their decimal point (at connect)."""
        for name in self._dp_points:
            p = self.regmap.points[name]
            words = await self._read_block(_one(name, p))
            dp = _codec.signed(p, _codec.words_to_raw(p, words))
            if not 0 <= dp <= 4:
                raise ProtocolError(
                    self.name,
                    f"decimal point {name!r} reads {dp} (0..4 expected)",
                    address=p.address,
                )
            self._dp[name] = dp

    async def connect(self, *, write_setup: bool = True) -> None:
        """Connect now. ``write_setup=False`` (a read-only tool) reads what decoding needs and
        writes nothing, now or at a reconnect: the device's settings stay as they are."""
        self._write_setup = write_setup
        await self.connect_setup()

    async def check_layers(self) -> list[tuple[str, float, float | bool | None]]:
        """Read back the device's own safety settings; ``layers_ok`` says if they match.

        Returns ``(point, wanted, found)`` for each.
        """
        found: list[tuple[str, float, float | bool | None]] = []
        ok = True
        for point, wanted in self._setup:
            value = await self.read_point(point)
            found.append((point, wanted, value))
            p = self.regmap.points[point]
            tolerance = _codec.resolution(p, self._dp_of(p)) / 2 + 1e-9
            if not isinstance(value, float | int) or abs(float(value) - wanted) > tolerance:
                ok = False
        if not ok and self._readings.get(LAYERS_OK, Reading(None, 0.0)).value is not False:
            log.error("%s: safety settings differ from the config: %s", self.name, found)
        self._readings[LAYERS_OK] = Reading(ok, time.monotonic())
        self._layers_due_s = time.monotonic() + LAYERS_CHECK_S
        return found

    async def read_point(self, name: str) -> float | bool | None:
        """One point (or bit) read now, decoded; None when the reading is not usable."""
        bit = self.regmap.bits.get(name)
        word = bit.word if bit is not None else name
        p = self.regmap.points[word]
        words = await self._read_block(_one(word, p))
        raw = _codec.words_to_raw(p, words)
        if bit is not None:
            return _codec.decode_bit(bit, raw)
        try:
            return _codec.decode(p, raw, self._dp_of(p))
        except _codec.BadValue:
            return None

    def _dp_of(self, p: Point) -> int:
        return self._dp.get(p.decimal_point, 0) if p.decimal_point else 0


def _one(name: str, p: Point) -> _codec.Block:
    return _codec.Block(p.table, p.wire_read_address, p.width, ((name, 0),))
