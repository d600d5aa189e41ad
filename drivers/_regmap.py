"""The register-map language: a device as its manual describes it.

A map names points (registers or bits, in the manual's own address numbering), their data types,
word and byte order, scaling or the register that gives the decimal point, how they are written
(FC5/FC6 or FC15/FC16, command values, inverted bits), what makes a reading unusable (sentinels,
error codes, an implausible value), the set-up written at connect and the device's watchdog.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from ._strict import StrictModel as _Strict

Table = Literal["coil", "discrete", "input", "holding"]
DataType = Literal["bool", "uint16", "int16", "uint32", "int32", "float32"]
WordOrder = Literal["high_low", "low_high"]
ByteOrder = Literal["big", "little"]
WriteFunction = Literal["single", "multiple"]
#: How the device's watchdog is fed: a register whose value must change (``change``; the WAGO
#: trigger register also wants it non-zero: ``nonzero_change``), any write to it (``any_write``),
#: or any request at all (``any_request``: polling feeds it).
WatchdogFeed = Literal["change", "nonzero_change", "any_write", "any_request"]
#: What the module does with its outputs when its watchdog trips: all to raw 0 (``zero``), each
#: to a substitute value set in the module (``safe_values``: the map's ``safe_value`` says which).
Fallback = Literal["zero", "safe_values"]
SafeValue = bool | Literal["hold"]

WIDTH = {"bool": 1, "uint16": 1, "int16": 1, "uint32": 2, "int32": 2, "float32": 2}
ADDRESS_MAX = 0xFFFF


class Point(_Strict):
    """One register (or pair) or bit. Engineering value = raw * scale * 10**-dp (+ offset)."""

    table: Table
    #: In the manual's numbering; the wire address is ``address - address_base``.
    address: Annotated[int, Field(ge=0, le=0x7FFFFFFF)]
    address_base: Annotated[int, Field(ge=0)] = 0
    #: Read (polled and read back) at another address than it is written (a WAGO coupler reads
    #: its outputs back 0x0200 above where they are written). Manual numbering too.
    read_address: Annotated[int, Field(ge=0)] | None = None
    type: DataType = "uint16"
    word_order: WordOrder = "high_low"
    byte_order: ByteOrder = "big"
    scale: float = 1.0
    offset: float = 0.0
    #: A point whose value is this point's number of decimals, read at connect (Omron, Autonics).
    decimal_point: str | None = None
    writable: bool = False
    #: A command register (pulse): written, not read back (its value self-clears).
    command: bool = False
    #: Read by the poller (see the generic maps).
    poll: bool = True
    #: ``True``: read this point back after a write; ``False``: the echo is the answer (a
    #: heartbeat); a name: the write's effect shows in that point or bit (a write-only command
    #: register whose run/stop shows in a status word).
    readback: bool | str = True
    #: FC6/FC5 (``single``) or FC16/FC15 (``multiple``); default: single for one register or bit,
    #: multiple for a 32-bit value. Some controllers accept FC16 only (Omron E5CC).
    write_function: WriteFunction | None = None
    #: A bool held in a register: the raw value meaning true (a command value such as 0x0100 =
    #: run) and the one meaning false; another raw value reads as BAD.
    true_value: Annotated[int, Field(ge=0, le=0xFFFF)] | None = None
    false_value: Annotated[int, Field(ge=0, le=0xFFFF)] | None = None
    #: A coil or input wired the other way round (raw 0 = true).
    invert: bool = False
    #: Raw values that mean "no value" (sensor open, over range): the reading is BAD. Default for
    #: an analog (``unit``) int16/int32: the type's two extremes.
    sentinels: list[int] | None = None
    #: The plausible engineering range; outside it the reading is BAD (default: by kind / unit).
    range: tuple[float, float] | None = None
    #: An output's safe value: what the booth needs it at when the supervisor is gone.
    safe_value: SafeValue | None = None
    #: Watchdog refresh point: how the device wants to be fed.
    feed: WatchdogFeed | None = None
    unit: str = ""
    #: The manual's section for this point (documentation; ``device watch`` shows it).
    ref: str = ""

    @model_validator(mode="after")
    def _check(self) -> Point:
        bit_table = self.table in ("coil", "discrete")
        if bit_table and self.type != "bool":
            raise ValueError(f"a {self.table} point must have type 'bool', not {self.type!r}")
        if self.type == "bool" and not bit_table and self.true_value is None:
            raise ValueError("a bool in a register needs 'true_value' (its raw code for true)")
        if (self.true_value is not None or self.false_value is not None) and bit_table:
            raise ValueError("true_value / false_value apply to a register point only")
        if self.type != "bool" and self.true_value is not None:
            raise ValueError("true_value / false_value need type 'bool'")
        if self.invert and not bit_table:
            raise ValueError("invert applies to a coil or discrete input (use a bit's invert)")
        if self.writable and self.table in ("discrete", "input"):
            raise ValueError(f"a {self.table} point cannot be writable")
        if self.command and not self.writable:
            raise ValueError("a command point must be writable")
        if not self.poll and not self.writable:
            raise ValueError("a point that is not polled must be writable (read back on write)")
        if self.readback is not True and not self.writable:
            raise ValueError("readback applies to a writable point only")
        if self.scale == 0:
            raise ValueError("scale must not be 0")
        if self.address < self.address_base:
            raise ValueError(
                f"address {self.address:#x} is below the map's address_base {self.address_base}"
            )
        if self.read_address is not None and self.read_address < self.address_base:
            raise ValueError(f"read_address {self.read_address:#x} is below the address_base")
        if self.wire_address + self.width - 1 > ADDRESS_MAX:
            raise ValueError(f"address {self.address:#x} is beyond the Modbus address space")
        if self.write_function == "single" and self.width > 1:
            raise ValueError(f"a {self.type} spans two registers: write_function 'multiple'")
        if self.range is not None and not self.range[0] < self.range[1]:
            raise ValueError(f"range {list(self.range)}: the low end must be below the high end")
        if self.safe_value is not None and not self.writable:
            raise ValueError("safe_value applies to a writable output only")
        if self.feed is not None and not self.writable:
            raise ValueError("feed applies to a writable watchdog refresh point only")
        return self

    @property
    def width(self) -> int:
        """Registers the value spans (1 for a bit)."""
        return WIDTH[self.type]

    @property
    def wire_address(self) -> int:
        """The protocol address a write goes to (0-based)."""
        return self.address - self.address_base

    @property
    def wire_read_address(self) -> int:
        """The protocol address a read comes from (0-based)."""
        manual = self.address if self.read_address is None else self.read_address
        return manual - self.address_base

    @property
    def multiple(self) -> bool:
        """Written with FC15/FC16."""
        if self.write_function is not None:
            return self.write_function == "multiple"
        return self.width > 1

    @property
    def is_bit(self) -> bool:
        return self.table in ("coil", "discrete")


class Bit(_Strict):
    """A named bit (or code) of a register point (a status word, 16 or 32 bits).

    Exactly one of: ``bit`` (that bit is set), ``equals`` (the word, masked, equals this code) or
    ``any_of`` (the word, masked, is one of these codes: an input error code).
    """

    word: str
    bit: Annotated[int, Field(ge=0, le=31)] | None = None
    equals: int | None = None
    any_of: list[int] | None = None
    mask: Annotated[int, Field(ge=1, le=0xFFFFFFFF)] = 0xFFFFFFFF
    invert: bool = False
    #: Points whose readings are BAD while this bit is on (an input error makes the PV BAD).
    invalidates: list[str] = Field(default_factory=list)
    #: The writable point a write of this bit goes to (``running`` is written through the
    #: controller's run/stop command register).
    written_by: str | None = None
    ref: str = ""

    @model_validator(mode="after")
    def _check(self) -> Bit:
        given = [x for x in (self.bit, self.equals, self.any_of) if x is not None]
        if len(given) != 1:
            raise ValueError("a bit needs exactly one of 'bit', 'equals', 'any_of'")
        if self.any_of is not None and not self.any_of:
            raise ValueError("any_of must name at least one code")
        return self


class SetupStep(_Strict):
    """One write at connect (and after a reconnect), read back unless a command.

    ``optional``: a model that locks or lacks the register (exception 02 or 03) is tolerated
    (logged), for settings such as a protect level that not every model has.
    """

    point: str
    value: float | bool
    optional: bool = False
    ref: str = ""


class Watchdog(_Strict):
    """The device's own communication watchdog (I/O coupler) or comm-loss timeout (controller)."""

    #: How it is fed (see WatchdogFeed).
    feed: WatchdogFeed = "change"
    #: What the module does with its outputs on a trip (I/O modules).
    fallback: Fallback | None = None
    #: After a trip the device answers requests with this Modbus exception code until cleared
    #: (a known state, reported once as a trip, not a flood of errors).
    trip_exception: Annotated[int, Field(ge=1, le=255)] | None = None
    #: The point or bit that shows the trip.
    tripped: str | None = None
    ref: str = ""


class WriteBlock(_Strict):
    """Consecutive writable points written in one FC16 (FC15) request, in this order: a drive's
    direct-data block, where target and speed must land together."""

    points: Annotated[list[str], Field(min_length=2)]
    ref: str = ""


class RegisterMap(_Strict):
    name: str
    description: str = ""
    #: The manual's numbering: an int for every table, or per table (``{holding = 40001}``).
    address_base: int | dict[Table, int] = 0
    word_order: WordOrder = "high_low"
    byte_order: ByteOrder = "big"
    #: An I/O coupler's module line-up, by item number, in slot order (documentation + check).
    modules: list[str] = Field(default_factory=list)
    points: dict[str, Point]
    bits: dict[str, Bit] = Field(default_factory=dict)
    setup: list[SetupStep] = Field(default_factory=list)
    watchdog: Watchdog | None = None
    blocks: dict[str, WriteBlock] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _defaults_into_points(cls, data: Any) -> Any:
        """Map-wide address base and word/byte order apply to every point that names none."""
        if not isinstance(data, dict) or not isinstance(data.get("points"), dict):
            return data
        base = data.get("address_base", 0)
        points = {}
        for name, given in data["points"].items():
            raw = dict(given) if isinstance(given, dict) else given
            if isinstance(raw, dict):
                if "address_base" not in raw:
                    table = raw.get("table")
                    raw["address_base"] = base.get(table, 0) if isinstance(base, dict) else base
                for key in ("word_order", "byte_order"):
                    if key not in raw and key in data:
                        raw[key] = data[key]
            points[name] = raw
        return {**data, "points": points}

    @model_validator(mode="after")
    def _check(self) -> RegisterMap:
        # A read address holds one value; a write address one setting. A write-only command
        # register (Omron's operation command at 0x0000) may share its address with a value
        # that is read there, and several command codes may go to one such register.
        read_at: dict[tuple[str, int], str] = {}
        written_at: dict[tuple[str, int], str] = {}
        for name, p in self.points.items():
            for offset in range(p.width):
                if p.poll or p.readback is True:
                    _claim(read_at, (p.table, p.wire_read_address + offset), name)
                if p.writable and p.readback is True and not p.command:
                    _claim(written_at, (p.table, p.wire_address + offset), name)
            if p.decimal_point is not None:
                dp = self.points.get(p.decimal_point)
                if dp is None or dp.type not in ("uint16", "int16"):
                    raise ValueError(
                        f"point {name!r}: decimal_point {p.decimal_point!r} is not a 16-bit "
                        "point of this map"
                    )
            if isinstance(p.readback, str) and not self._names(p.readback):
                raise ValueError(f"point {name!r}: readback {p.readback!r} is not in the map")
        for name, b in self.bits.items():
            if b.word not in self.points:
                raise ValueError(f"bit {name!r} names unknown register {b.word!r}")
            word = self.points[b.word]
            if word.is_bit or word.type == "bool":
                raise ValueError(f"bit {name!r}: {b.word!r} is not a register")
            if not word.poll:
                raise ValueError(f"bit {name!r}: its register {b.word!r} is not polled")
            for ref_name in (*b.invalidates, *([b.written_by] if b.written_by else [])):
                if ref_name not in self.points:
                    raise ValueError(f"bit {name!r}: {ref_name!r} is not a point of this map")
            if b.written_by is not None and not self.points[b.written_by].writable:
                raise ValueError(f"bit {name!r}: written_by {b.written_by!r} is not writable")
            if b.bit is not None and b.bit >= 16 * word.width:
                raise ValueError(f"bit {name!r}: bit {b.bit} is beyond {b.word!r} ({word.type})")
        for step in self.setup:
            target = self.points.get(step.point)
            if target is None or not target.writable:
                raise ValueError(f"setup: {step.point!r} is not a writable point of this map")
        for bname, block in self.blocks.items():
            self._check_block(bname, block)
        wd = self.watchdog
        if wd is not None and wd.tripped is not None and not self._names(wd.tripped):
            raise ValueError(f"watchdog.tripped: {wd.tripped!r} is not in the map")
        if wd is not None and wd.fallback == "zero":
            for name, p in self.points.items():
                if p.safe_value is None or not p.is_bit:
                    continue
                # raw 0 is what the module leaves; read through the wiring's inversion.
                if p.safe_value == "hold" or p.safe_value != p.invert:
                    raise ValueError(
                        f"point {name!r}: safe_value {p.safe_value!r}, but the module's watchdog "
                        f"sets every output to 0, which is {p.invert!r} for this output"
                    )
        return self

    def safe_output_problems(self, *, suction: bool) -> list[str]:
        """What the module's fall-back would do wrong to the booth (CONTRACT s.4).

        The heater contactor must drop; with a suction holder, the vacuum must not be released
        (a part in the bath would fall): pump and valve must stay on or hold. The exhaust keeps
        running and N2 keeps flowing (docs/safety-design.md, "Safe state, per actuator"): the
        flux's vapour is still extracted and the enclosure stays inert over a hot bath.
        """
        problems = []
        wanted: dict[str, tuple[SafeValue, ...]] = {
            "heater_contactor": (False,),
            "exhaust_fan": (True, "hold"),
            "n2_maintain": (True, "hold"),
        }
        if suction:
            wanted |= {"vacuum_pump": (True, "hold"), "vacuum_valve": (True, "hold")}
        for name, allowed in wanted.items():
            p = self.points.get(name)
            if p is None or not p.writable:
                continue
            if p.safe_value is None or p.safe_value not in allowed:
                problems.append(
                    f"{name}: safe_value {p.safe_value!r}: the module's fall-back must leave it "
                    f"{' or '.join(repr(a) for a in allowed)}"
                )
        return problems

    def _check_block(self, name: str, block: WriteBlock) -> None:
        points = []
        for pname in block.points:
            p = self.points.get(pname)
            if p is None or not p.writable or (p.type == "bool" and not p.is_bit):
                raise ValueError(f"blocks.{name}: {pname!r} is not a writable value of this map")
            points.append(p)
        for i in range(1, len(points)):
            prev, p, pname = points[i - 1], points[i], block.points[i]
            if p.table != prev.table or p.wire_address != prev.wire_address + prev.width:
                raise ValueError(
                    f"blocks.{name}: {pname!r} does not follow the point before it "
                    f"({p.table} {p.wire_address}, expected {prev.table} "
                    f"{prev.wire_address + prev.width})"
                )

    def _names(self, name: str) -> bool:
        return name in self.points or name in self.bits


def _claim(at: dict[tuple[str, int], str], key: tuple[str, int], name: str) -> None:
    if key in at and at[key] != name:
        raise ValueError(f"points {at[key]!r} and {name!r} share {key[0]} address {key[1]}")
    at[key] = name
