"""The faults the simulator can inject (CONTRACT section 5), with their values.

This is only bookkeeping: which faults are active and with what value. Their effects live in the
physics (and, for ``device_offline`` and ``o2_analyzer_silent``, in the servers).
"""

from __future__ import annotations

import math
from typing import Any

#: Every fault name, with what its value means (None: the fault takes no value).
FAULTS: dict[str, str | None] = {
    "door_open": None,
    "estop": None,
    "exhaust_fail": None,
    "n2_supply_loss": None,
    "o2_leak": "O2 ppm the booth steps to",
    "o2_analyzer_silent": None,
    "tc_open": "optional vessel name (default: every vessel)",
    "heater_stuck_on": "optional vessel name (default: every vessel)",
    "heater_dead": "optional vessel name (default: every vessel)",
    "high_limit_trip": None,
    "vacuum_leak": "optional kPa the head's vacuum settles at (default [sim] vacuum_leak_kpa)",
    "hoist_stall": None,
    "flux_low": None,
    "device_offline": "device name",
}
FAULT_NAMES: tuple[str, ...] = tuple(FAULTS)
_VESSEL_FAULTS = frozenset({"tc_open", "heater_stuck_on", "heater_dead"})
O2_MAX_PPM = 1_000_000.0
VACUUM_MAX_KPA = 101.0


class FaultError(ValueError):
    """An unknown fault name or a bad value; the message says which and why."""


class FaultSet:
    """The active faults. ``device_offline`` may name several devices at once."""

    def __init__(self, devices: set[str], vessels: set[str]) -> None:
        self._devices = devices
        self._vessels = vessels
        self._active: dict[str, Any] = {}

    def inject(self, name: str, value: Any = None) -> Any:
        """Activate a fault; returns the value stored. FaultError if the name or value is bad."""
        if name not in FAULTS:
            raise FaultError(f"unknown fault {name!r}; known: {', '.join(FAULT_NAMES)}")
        if name == "o2_leak":
            ppm = _number(name, value)
            if not 0 <= ppm <= O2_MAX_PPM:
                raise FaultError(f"o2_leak: {ppm:g} ppm is outside 0..{O2_MAX_PPM:g}")
            self._active[name] = ppm
        elif name == "vacuum_leak":
            if value is None:
                self._active[name] = True
            else:
                kpa = _number(name, value)
                if not 0 <= kpa <= VACUUM_MAX_KPA:
                    raise FaultError(f"vacuum_leak: {kpa:g} kPa is outside 0..{VACUUM_MAX_KPA:g}")
                self._active[name] = kpa
        elif name == "device_offline":
            if value is None or str(value) not in self._devices:
                known = ", ".join(sorted(self._devices))
                raise FaultError(f"device_offline needs --value DEVICE, one of: {known}")
            self._active.setdefault(name, set()).add(str(value))
        elif name in _VESSEL_FAULTS:
            if value is not None and str(value) not in self._vessels:
                raise FaultError(
                    f"{name}: {value!r} is not a vessel ({', '.join(sorted(self._vessels))})"
                )
            self._active[name] = None if value is None else str(value)
        else:
            if value is not None:
                raise FaultError(f"{name} takes no value")
            self._active[name] = True
        return self._active[name]

    def clear(self, name: str | None = None) -> None:
        """Clear one fault (every device of ``device_offline``) or, with no name, all."""
        if name is None:
            self._active.clear()
            return
        if name not in FAULTS:
            raise FaultError(f"unknown fault {name!r}; known: {', '.join(FAULT_NAMES)}")
        self._active.pop(name, None)

    def __contains__(self, name: object) -> bool:
        return name in self._active

    def value(self, name: str) -> Any:
        return self._active.get(name)

    def on_vessel(self, name: str, vessel: str) -> bool:
        """A per-vessel fault active on this vessel (no value: on every vessel)."""
        return name in self._active and self._active[name] in (None, vessel)

    def offline(self, device: str) -> bool:
        return device in self._active.get("device_offline", ())

    def names(self) -> list[str]:
        return sorted(self._active)

    def values(self) -> dict[str, Any]:
        """JSON-ready values of the active faults that carry one."""
        out: dict[str, Any] = {}
        for name, v in self._active.items():
            if isinstance(v, set):
                out[name] = sorted(v)
            elif v is not True and v is not None:
                out[name] = v
        return out


def _number(name: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise FaultError(f"{name} needs a numeric --value, not {value!r}") from None
    if not math.isfinite(number):
        raise FaultError(f"{name} needs a finite --value")
    return number
