"""Which independent layer covers each device when the supervisor falls silent (CONTRACT s.4).

A heater controller with its own comm-loss timeout stops by itself (``comm_timeout_s`` is then
required). Most real ones have none: that is allowed only when the I/O module's watchdog drops
the heater contactor (the second path). The I/O module's fall-back must leave the contactor open
and, with a suction holder, the vacuum on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from drivers import DeviceConfig, RegisterMap
from drivers._config import COMM_TIMEOUT_S_MAX, COMM_TIMEOUT_S_MIN

if TYPE_CHECKING:
    from booth_ctl.config._booth import BoothConfig

#: The points of a controller's own comm-loss layer.
COMM_LOSS_POINTS = ("heartbeat", "comm_timeout_s", "comm_lost")


def has_comm_loss(dev: DeviceConfig, regmap: RegisterMap) -> bool:
    """False only for a heater controller whose map has no comm-loss timeout and whose config
    gives none: its safety then rests on the I/O watchdog."""
    if dev.kind != "temp_controller":
        return True
    return dev.comm_timeout_s is not None or "comm_timeout_s" in regmap.points


def without_comm_loss(missing: list[str]) -> list[str]:
    """``missing_points`` lines less the comm-loss layer's points, for a controller that has
    none (``has_comm_loss`` false): ``layer_problems`` then asks for the I/O watchdog instead."""
    return [m for m in missing if not any(repr(p) in m for p in COMM_LOSS_POINTS)]


def layer_problems(cfg: BoothConfig, maps: Mapping[str, RegisterMap]) -> list[str]:
    problems = []
    io_cover = [
        n
        for n, d in cfg.devices.items()
        if d.kind == "remote_io"
        and n in maps
        and maps[n].points.get("heater_contactor") is not None
        and maps[n].points["heater_contactor"].safe_value is False
    ]
    for name, d in cfg.devices.items():
        regmap = maps.get(name)
        if regmap is None:
            continue
        if d.kind == "remote_io":
            suction = cfg.holder.kind != "chain"
            for problem in regmap.safe_output_problems(suction=suction):
                problems.append(f"devices.{name}.map: {regmap.name}: {problem}")
        if d.kind != "temp_controller":
            continue
        if "comm_timeout_s" in regmap.points and d.comm_timeout_s is None:
            problems.append(
                f"devices.{name}.comm_timeout_s: required for a temp_controller whose map has "
                f"a comm-loss timeout (it stops its output without the supervisor's heartbeat; "
                f"{COMM_TIMEOUT_S_MIN:g}-{COMM_TIMEOUT_S_MAX:g} s)"
            )
        elif "comm_timeout_s" not in regmap.points and not io_cover:
            problems.append(
                f"devices.{name}.map: {regmap.name!r} has no comm-loss timeout, and no I/O "
                "module's watchdog drops the heater contactor (heater_contactor with "
                "safe_value = false) to cover it"
            )
    return problems
