"""What a personality is, and the glue that serves it with the simulator's Modbus servers."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from typing import Protocol

from pymodbus.constants import ExcCodes

from .._modbus import ModbusResponder, Unit

ILLEGAL_FUNCTION = 0x01
ILLEGAL_ADDRESS = 0x02
ILLEGAL_VALUE = 0x03
DEVICE_FAILURE = 0x04
WRITE_FUNCTIONS = frozenset({5, 6, 15, 16})


class Refusal(Exception):
    """The device answers this request with a Modbus exception ``code``."""

    def __init__(self, code: int, why: str = "") -> None:
        self.code = code
        super().__init__(f"exception {code:#04x}: {why}")


class Personality(Protocol):
    """One device: raw requests in, raw answers out; the physics sets its state by attribute."""

    device: str
    #: Requests served, by function code (tests and benches count them).
    requests: Counter[int]

    def read(self, fc: int, address: int, count: int) -> list[int]: ...

    def write(self, fc: int, address: int, values: list[int]) -> None: ...


class _Context:
    """What pymodbus's request PDUs call: routed to the personality, Refusal -> exception."""

    def __init__(self, units: Mapping[int, Personality]) -> None:
        self.units = units

    async def async_getValues(
        self, device_id: int, func_code: int, address: int, count: int = 1
    ) -> list[int] | list[bool] | ExcCodes:
        if func_code in WRITE_FUNCTIONS:
            # pymodbus asks after a write for the reply's values; the responder echoes the
            # request (FC5/6) or answers address and count (FC15/16): not a request of its own.
            return [0] * count
        dev = self.units[device_id]
        dev.requests[func_code] += 1
        try:
            values = dev.read(func_code, address, count)
        except Refusal as exc:
            return ExcCodes(exc.code)
        if func_code in (1, 2):
            return [bool(v) for v in values]
        return values

    async def async_setValues(
        self, device_id: int, func_code: int, address: int, values: list[int] | list[bool]
    ) -> ExcCodes | None:
        dev = self.units[device_id]
        dev.requests[func_code] += 1
        try:
            dev.write(func_code, address, [int(v) for v in values])
        except Refusal as exc:
            return ExcCodes(exc.code)
        return None


def personality_responder(
    units: Mapping[int, Personality],
    offline: Callable[[str], bool] = lambda _name: False,
    *,
    tcp: bool = False,
) -> ModbusResponder:
    """A responder for the simulator's TCP or RTU server, answering from personalities."""
    responder = ModbusResponder(
        {uid: Unit(dev.device, dev) for uid, dev in units.items()},  # type: ignore[arg-type]
        offline,
        tcp=tcp,
    )
    responder._context = _Context(  # type: ignore[assignment]
        {uid: u.bank for uid, u in responder.units.items()}  # type: ignore[misc]
    )
    return responder
