"""Writes beyond one register or coil, and the watchdog trip as a known error."""

from __future__ import annotations

from collections.abc import Awaitable

from pymodbus.pdu import ModbusPDU

from ._errors import ModbusExceptionReply, ProtocolError
from ._linesched import Priority
from ._modbus import Client, ModbusLine, _check_function
from ._regmap import Point

FC_WRITE_COILS = 15
FC_WRITE_REGISTERS = 16


class DeviceTripped(ModbusExceptionReply):
    """The device's own watchdog tripped: it refuses requests until cleared (a known state)."""

    def __init__(self, device: str, code: int, *, address: int | None = None) -> None:
        super().__init__(device, code, address=address)
        self.args = (
            f"{device} at address {address}: watchdog tripped (exception {code:#04x}): the "
            "module holds its outputs safe until the watchdog is cleared",
        )


async def write_multiple(
    line: ModbusLine,
    device: str,
    *,
    unit: int,
    p: Point,
    values: list[int],
    timeout_s: float,
    priority: Priority = Priority.WRITE,
) -> None:
    """FC15 / FC16 of one point (or of a block of consecutive ones); one attempt."""
    address = p.wire_address
    fc = FC_WRITE_COILS if p.is_bit else FC_WRITE_REGISTERS

    def call(c: Client) -> Awaitable[ModbusPDU]:
        if p.is_bit:
            return c.write_coils(address, [bool(v) for v in values], device_id=unit)
        return c.write_registers(address, values, device_id=unit)

    # same package: one request, its own FC
    pdu = await line._execute(device, address, timeout_s, call, priority)
    _check_function(device, address, pdu, fc)
    if pdu.address != address or pdu.count != len(values):
        raise ProtocolError(
            device,
            f"write reply mismatch: sent {len(values)} to {address}, reply "
            f"{pdu.count} at {pdu.address}",
            address=address,
        )
