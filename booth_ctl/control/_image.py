"""The process image one scan sees, and the safe ways to read it.

Every accessor turns a missing, stale, bad or ill-typed reading into "unsafe": ``None`` for a
value, ``False`` for a healthy-bit. Nothing here raises on bad input.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from booth_ctl.config._booth import BoothConfig
from drivers import Quality, Reading


@dataclass(frozen=True, slots=True)
class Snapshot:
    #: time.monotonic() of the scan, in seconds.
    now: float
    signals: Mapping[str, Reading]
    #: Wall-clock time of the scan (epoch seconds), used only to stamp alarms; optional.
    wall: float | None = None
    #: Devices with a wanted output whose last write failed (the runtime's writer says so).
    undelivered: frozenset[str] = frozenset()
    #: Devices with a timeout of their own whose heartbeats are not landing now (withheld, or
    #: failing, and none landed since): such a device may go safe by itself at any moment.
    unbeaten: frozenset[str] = frozenset()


def fresh_value(snap: Snapshot, name: str, max_age_s: float) -> float | None:
    """The numeric value of a GOOD reading no older than ``max_age_s``, else None."""
    r = snap.signals.get(name)
    if r is None or r.quality is not Quality.GOOD:
        return None
    v = r.value
    if v is None or isinstance(v, bool) or not isinstance(v, int | float):
        return None
    age_s = snap.now - r.ts
    if age_s > max_age_s or not math.isfinite(v):
        return None
    return float(v)


def fresh_bit(snap: Snapshot, name: str, max_age_s: float) -> bool | None:
    """The value of a GOOD, fresh bit (0/1 numbers accepted), else None."""
    r = snap.signals.get(name)
    if r is None or r.quality is not Quality.GOOD or snap.now - r.ts > max_age_s:
        return None
    v = r.value
    if isinstance(v, bool):
        return v
    if isinstance(v, int | float) and v in (0, 1):
        return bool(v)
    return None


def is_true(snap: Snapshot, name: str, max_age_s: float) -> bool:
    """True only for a GOOD, fresh reading that is true: the only way to satisfy a permissive."""
    return fresh_bit(snap, name, max_age_s) is True


def is_false(snap: Snapshot, name: str, max_age_s: float) -> bool:
    """True only for a GOOD, fresh reading that is false (a fault bit proven clear)."""
    return fresh_bit(snap, name, max_age_s) is False


def quality(snap: Snapshot, name: str) -> Quality:
    r = snap.signals.get(name)
    return Quality.NO_COMM if r is None else r.quality


@dataclass(frozen=True, slots=True)
class Names:
    """Signal and output names of this booth, from the config's device names."""

    io: str
    holder: str
    o2: str
    #: vessel name -> its temperature controller's device name.
    heaters: Mapping[str, str]
    io_stale_s: float
    holder_stale_s: float
    heater_stale_s: float
    o2_stale_s: float

    @classmethod
    def of(cls, cfg: BoothConfig) -> Names:
        io = cfg.device_of_kind("remote_io")
        holder = cfg.device_of_kind("holder_drive")
        o2 = cfg.device_of_kind("o2_analyzer")
        heaters = {v: vc.controller for v, vc in cfg.vessels.items()}
        heater_stale = min(
            [cfg.limits.temp_stale_s, *(cfg.devices[h].stale_s for h in heaters.values())]
        )
        return cls(
            io=io,
            holder=holder,
            o2=o2,
            heaters=heaters,
            io_stale_s=cfg.devices[io].stale_s,
            holder_stale_s=cfg.devices[holder].stale_s,
            heater_stale_s=heater_stale,
            o2_stale_s=min(cfg.limits.o2_stale_s, cfg.devices[o2].stale_s),
        )
