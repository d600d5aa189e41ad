"""The one table of the points each device kind must have for the booth to be safe.

Three parts of the project rely on the same points of a register map: the supervisor's map check
(the booth config refuses a map without them, in ``boothctl config check`` and ``boothctl run``
alike), the Modbus device's set-up at every (re)connect (the device's own watchdog or comm-loss
timeout, written from the config), and the simulator's settings check (the simulated device
serves these points). They all read this table, so a point cannot be required in one place and
forgotten in another. It lives in ``drivers`` because the simulator may not import ``booth_ctl``.

Access: ``w`` must be a writable point (the supervisor writes it), ``r`` a point or a bit (it
reads it). A point needed only with a certain holder (the vacuum for suction, the hook switch for
a chain hanger) names those holder kinds.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from ._config import RegisterMap

Access = Literal["r", "w"]
#: Who relies on a point: the supervisor's map check, the device's set-up at connect, the
#: simulator's settings check.
User = Literal["supervisor", "setup", "sim"]

_ALL: frozenset[User] = frozenset({"supervisor", "sim"})
_SUPERVISOR: frozenset[User] = frozenset({"supervisor"})
_SIM: frozenset[User] = frozenset({"sim"})
_SETUP: frozenset[User] = frozenset({"supervisor", "setup", "sim"})
_SUCTION = frozenset({"suction", "both"})
_CHAIN = frozenset({"chain", "both"})


@dataclass(frozen=True, slots=True)
class SafetyPoint:
    kind: str
    point: str
    access: Access
    why: str
    users: frozenset[User]
    #: The config field written to this point at every (re)connect (users include "setup").
    setup_field: str | None = None
    #: Needed only with these holder kinds (None: always).
    holder_kinds: frozenset[str] | None = None


def _p(
    kind: str,
    point: str,
    access: Access,
    users: frozenset[User],
    why: str,
    *,
    setup_field: str | None = None,
    holder_kinds: frozenset[str] | None = None,
) -> SafetyPoint:
    return SafetyPoint(kind, point, access, why, users, setup_field, holder_kinds)


SAFETY_POINTS: tuple[SafetyPoint, ...] = (
    # -- remote I/O: its watchdog, the heater's second off path, and the inputs of every permissive
    _p("remote_io", "watchdog_refresh", "w", _ALL,
       "the heartbeat that keeps the module's communication watchdog from tripping"),
    _p("remote_io", "watchdog_timeout_ms", "w", _SETUP,
       "the watchdog time, written at connect from devices.<io>.watchdog_ms",
       setup_field="watchdog_ms"),
    _p("remote_io", "watchdog_clear", "w", _ALL, "re-arms the watchdog after a trip (reset)"),
    _p("remote_io", "watchdog_tripped", "r", _ALL,
       "the module dropped its outputs to safe: permissive io_ok"),
    _p("remote_io", "heater_contactor", "w", _SUPERVISOR,
       "the heater's second, independent off path (CONTRACT s.4)"),
    _p("remote_io", "exhaust_fan", "w", _SUPERVISOR, "runs the exhaust the solder dip needs"),
    _p("remote_io", "n2_purge", "w", _SUPERVISOR, "purges the booth with N2 before any dip"),
    _p("remote_io", "n2_maintain", "w", _SUPERVISOR, "keeps the N2 blanket while idle or running"),
    _p("remote_io", "door_closed", "r", _SUPERVISOR, "permissive door_closed"),
    _p("remote_io", "estop_ok", "r", _SUPERVISOR, "permissive estop_clear"),
    _p("remote_io", "exhaust_ok", "r", _SUPERVISOR, "permissive exhaust_ok"),
    _p("remote_io", "n2_supply_ok", "r", _SUPERVISOR, "permissive n2_supply_ok"),
    _p("remote_io", "high_limit_ok", "r", _SUPERVISOR, "the independent high limit's state"),
    _p("remote_io", "n2_flow_lpm", "r", _SUPERVISOR,
       "counts the N2 purged since the door closed: permissive o2_ok"),
    _p("remote_io", "flux_level_pct", "r", _SUPERVISOR, "permissive flux_level_ok"),
    _p("remote_io", "vacuum_kpa", "r", _SUPERVISOR, "permissive part_held (suction)",
       holder_kinds=_SUCTION),
    _p("remote_io", "vacuum_pump", "w", _SUPERVISOR, "holds the part on the suction head",
       holder_kinds=_SUCTION),
    _p("remote_io", "vacuum_valve", "w", _SUPERVISOR, "holds the part on the suction head",
       holder_kinds=_SUCTION),
    _p("remote_io", "hook_engaged", "r", _SUPERVISOR, "permissive part_held (chain hanger)",
       holder_kinds=_CHAIN),
    # -- temperature controller: heater run, setpoint, its comm-loss timeout, the trip inputs
    _p("temp_controller", "heartbeat", "w", _ALL,
       "keeps the controller's comm-loss timeout from stopping its output"),
    _p("temp_controller", "comm_timeout_s", "w", _SETUP,
       "the comm-loss timeout, written at connect from devices.<name>.comm_timeout_s",
       setup_field="comm_timeout_s"),
    _p("temp_controller", "comm_lost", "r", _ALL, "the controller stopped for lack of heartbeat"),
    _p("temp_controller", "run", "w", _ALL, "the heater's first off path (run = 0)"),
    _p("temp_controller", "sv_c", "w", _ALL, "the setpoint (idle or the recipe's)"),
    _p("temp_controller", "pv_c", "r", _ALL,
       "the solder temperature: over-temperature, runaway, permissive solder_temp_ok"),
    _p("temp_controller", "output_pct", "r", _ALL, "the heater output: runaway and no-rise checks"),
    _p("temp_controller", "tc_open", "r", _ALL, "thermocouple fault: the heater must go off"),
    _p("temp_controller", "alarm", "r", _SIM, "the controller's deviation alarm"),
    _p("temp_controller", "running", "r", _SIM, "the controller's run state"),
    # -- holder drive: where it goes (withdrawal included), its comm-loss timeout, where it is
    _p("holder_drive", "heartbeat", "w", _ALL,
       "keeps the drive's comm-loss timeout from withdrawing the part by itself"),
    _p("holder_drive", "comm_timeout_s", "w", _SETUP,
       "the comm-loss timeout, written at connect from devices.<name>.comm_timeout_s",
       setup_field="comm_timeout_s"),
    _p("holder_drive", "comm_lost", "r", _ALL, "the drive withdrew for lack of heartbeat"),
    _p("holder_drive", "z_target_mm", "w", _ALL, "every move of the part, the withdrawal included"),
    _p("holder_drive", "z_speed_mm_s", "w", _ALL, "the dip's entry and withdrawal speeds"),
    _p("holder_drive", "station_target", "w", _ALL, "the station the holder travels to"),
    _p("holder_drive", "fault_reset", "w", _ALL, "clears a stall after reset"),
    _p("holder_drive", "z_mm", "r", _ALL, "where the part is: in a bath or at the top"),
    _p("holder_drive", "station", "r", _ALL, "which bath the part is over"),
    _p("holder_drive", "stall", "r", _ALL, "permissive holder_ok"),
    _p("holder_drive", "moving", "r", _ALL, "a drive between stations is not at a station"),
    _p("holder_drive", "limit_top", "r", _SIM, "the drive's top limit switch"),
    _p("holder_drive", "limit_bottom", "r", _SIM, "the drive's bottom limit switch"),
    _p("holder_drive", "in_position", "r", _SIM, "the drive reached its target"),
    # -- O2 analyzer on Modbus (an ASCII one has no map): the value and its validity
    _p("o2_analyzer", "ppm", "r", _ALL, "the booth's O2: permissive o2_ok"),
    _p("o2_analyzer", "status_ok", "r", _ALL,
       "the analyzer says its value is a measurement: permissive o2_ok"),
)  # fmt: skip


def _setup_points() -> dict[str, tuple[str, str]]:
    out = {}
    for p in SAFETY_POINTS:
        if p.setup_field is not None:
            out[p.kind] = (p.setup_field, p.point)
    return out


#: Device set-up written on every (re)connect: kind -> (config field, map point).
SETUP_POINTS: MappingProxyType[str, tuple[str, str]] = MappingProxyType(_setup_points())


def points_for(kind: str, user: User, holder_kind: str | None = None) -> Iterator[SafetyPoint]:
    """The points of this kind that ``user`` relies on (with this holder, if it matters)."""
    for p in SAFETY_POINTS:
        if p.kind != kind or user not in p.users:
            continue
        kinds = p.holder_kinds
        if kinds is not None and holder_kind is not None and holder_kind not in kinds:
            continue
        yield p


def missing_points(
    name: str, kind: str, regmap: RegisterMap, user: User, holder_kind: str | None = None
) -> list[str]:
    """One problem line per point of the table that the map lacks, naming device, point and why."""
    problems = []
    for p in points_for(kind, user, holder_kind):
        if p.access == "r" and (p.point in regmap.points or p.point in regmap.bits):
            continue
        if p.access == "w" and p.point in regmap.points and regmap.points[p.point].writable:
            continue
        what = "writable point" if p.access == "w" else "point or bit"
        who = f"the simulated {kind}" if user == "sim" else f"the {kind}'s safety layer"
        problems.append(
            f"devices.{name}.map: map {regmap.name!r} has no {what} {p.point!r} "
            f"({who} needs it: {p.why})"
        )
    return problems
