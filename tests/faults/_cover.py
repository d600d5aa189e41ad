"""A heater controller without a comm-loss timeout of its own, taken offline.

Most real controllers (the Omron E5CC among them) have no communications timeout: unreachable,
they keep running at their last setpoint. The booth config allows one only when the heater's
other path covers it (booth_ctl.config._layers): the supervisor opens the heater contactor
through the I/O module, and if that write does not land the module's own fieldbus watchdog
drops it. So the matrix cannot ask for "heater off by both paths" here; it asks for what the
layers can give, judged from the simulator's truth:

- the contactor open (coil and contactor) and the heater actually unpowered within the goal;
- the heater stays unpowered for as long as the controller cannot be reached;
- once the controller answers again, the supervisor stops it (run off) within the goal.

A controller that has its own comm-loss timeout keeps the stricter goal of the matrix (both
paths off), unchanged.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from booth_ctl.config._layers import has_comm_loss

if TYPE_CHECKING:
    from booth_ctl.config._booth import LoadedConfig

    from ._matrix import Outcome
    from ._rig import Rig, Sample

#: After the controller answers again, the supervisor must have stopped it within this (s).
STOPPED_WHEN_BACK_S = 1.0

RESPONSE = (
    "trip: contactor open and heater unpowered, aborted; "
    "controller unreachable: stopped when it answers again"
)
GOAL = "contactor open <= 1 s; heater unpowered <= 1 s; controller stopped <= 1 s after it answers"


def uncovered_controller(loaded: LoadedConfig | None, device: str | None) -> bool:
    """Whether ``device`` is a heater controller with no comm-loss timeout of its own."""
    if loaded is None or device is None or device not in loaded.config.devices:
        return False
    regmap = loaded.maps.get(device)
    if regmap is None:
        return False
    return not has_comm_loss(loaded.config.devices[device], regmap)


def unpowered(s: Sample) -> bool:
    """The heater cannot heat: the contactor's coil and contacts open, no heater power."""
    return not s.coil and not s.contactor and not s.heater_power


async def contactor_path(
    rig: Rig, out: Outcome, t0: float, goal_s: float, generous_s: float
) -> None:
    """The trip, with the contactor as the one path that can act while the controller is deaf."""
    tl = rig.timeline
    await rig.wait(lambda: rig.state in ("aborting", "aborted"), generous_s, "a trip")
    await rig.wait(
        lambda: unpowered(tl.samples[-1]) if tl.samples else False,
        generous_s,
        "contactor open and heater unpowered",
    )
    coil = tl.first(lambda s: not s.coil, t0)
    off = tl.first(unpowered, t0)
    out.measured["contactor_open"] = None if coil is None else coil.t - t0
    out.measured["heater_unpowered"] = None if off is None else off.t - t0
    for name in ("contactor_open", "heater_unpowered"):
        v = out.measured[name]
        if v is None or v > goal_s:
            out.missed.append(f"{name} after {v} s")


async def stopped_when_back(
    rig: Rig, out: Outcome, device: str, t0: float, generous_s: float
) -> None:
    """The controller answers again: the supervisor must stop it, and until then (from the
    fault at ``t0`` on) the heater must have stayed unpowered."""
    tl = rig.timeline
    off = tl.first(unpowered, t0)
    if off is not None and any(s.heater_power for s in tl.samples if s.t > off.t):
        out.violations.append("the heater was powered again while its controller was unreachable")
    if tl.samples and not tl.samples[-1].running:
        out.notes.append("the controller was not running when it came back")
    rig.sim.clear("device_offline")
    back = time.monotonic()
    await rig.wait(
        lambda: bool(tl.samples) and tl.samples[-1].t > back and not tl.samples[-1].running,
        generous_s,
        f"{device} stopped once it answers again",
    )
    stopped = tl.first(lambda s: not s.running, back)
    took = None if stopped is None else stopped.t - back
    out.measured["stopped_when_back"] = took
    if took is None or took > STOPPED_WHEN_BACK_S:
        out.missed.append(f"{device} stopped {took} s after it answered again")
    truth = rig.truth()
    if truth["heater_on"]:
        out.violations.append("heater powered after the controller came back")
