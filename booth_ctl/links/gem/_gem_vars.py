"""The booth's GEM variables: status variables, data variables, collection events, alarms and
equipment constants, with their ids and SECS-II formats (the tables of docs/gem.md).

SVIDs 1-6 are CONTRACT §8. CEIDs: one per MQTT event type. DVIDs: one per field of those events
(an event that lacks a field reports it as a zero-length item). ALIDs: one per alarm code (the
alarm's own id, e.g. ``vessel_dips.v1``, is in the text).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from booth_ctl.links.gem._secs2 import Fmt, Item, SecsFormatError, num

MDLN = "BOOTH-SI"


@dataclass(frozen=True)
class Var:
    id: int
    name: str
    fmt: Fmt
    units: str = ""


# ---------------------------------------------------------------------- status variables

SVS: tuple[Var, ...] = (
    Var(1, "state", Fmt.A),
    Var(2, "mode", Fmt.A),
    Var(3, "solder_temp_c", Fmt.F8, "degC"),
    Var(4, "o2_ppm", Fmt.F8, "ppm"),
    Var(5, "job", Fmt.A),
    Var(6, "units_done", Fmt.U4),
    # Beyond the contract's six: GEM's own state, for hosts that poll it.
    Var(7, "control_state", Fmt.U1),
    Var(8, "clock", Fmt.A),
    Var(9, "events_seq", Fmt.U4),
)
SV_BY_ID = {v.id: v for v in SVS}

#: E30 control states as SV 7 reports them (CONTROLSTATE).
CONTROL_CODES = {
    "equipment_offline": 1,
    "attempt_online": 2,
    "host_offline": 3,
    "online_local": 4,
    "online_remote": 5,
}


def sv_values(
    status: Mapping[str, Any],
    telemetry: Mapping[str, Any] | None,
    *,
    mode: str,
    control_state: str,
    clock: str,
    seq: int,
) -> dict[int, Any]:
    job = status.get("job") or {}
    tele = telemetry or {}
    return {
        1: status.get("state", ""),
        2: mode,
        3: tele.get("solder_temp_c"),
        4: tele.get("o2_ppm"),
        5: job.get("lot_id") or "",
        6: job.get("units_done") or 0,
        7: CONTROL_CODES[control_state],
        8: clock,
        9: seq,
    }


# ---------------------------------------------------------------------- events and their data

CEIDS: dict[str, int] = {
    "state_changed": 1,
    "alarm_set": 2,
    "alarm_cleared": 3,
    "job_started": 4,
    "unit_started": 5,
    "dip": 6,
    "dip_withdrawn": 7,
    "flux_dip": 8,
    "unit_completed": 9,
    "unit_rejected": 10,
    "job_completed": 11,
    "job_aborted": 12,
    "refreshed": 13,
}
CEID_NAMES = {v: k for k, v in CEIDS.items()}

DVS: tuple[Var, ...] = (
    Var(1001, "seq", Fmt.U4),
    Var(1002, "ts", Fmt.F8, "s"),
    Var(1003, "from", Fmt.A),
    Var(1004, "to", Fmt.A),
    Var(1005, "reason", Fmt.A),
    Var(1006, "id", Fmt.A),
    Var(1007, "code", Fmt.A),
    Var(1008, "severity", Fmt.A),
    Var(1009, "text", Fmt.A),
    Var(1010, "lot_id", Fmt.A),
    Var(1011, "recipe", Fmt.A),
    Var(1012, "units", Fmt.U4),
    Var(1013, "unit", Fmt.U4),
    Var(1014, "dip", Fmt.U4),
    Var(1015, "vessel", Fmt.A),
    Var(1016, "alloy", Fmt.A),
    Var(1017, "o2_ppm", Fmt.F8, "ppm"),
    Var(1018, "solder_temp_c", Fmt.F8, "degC"),
    Var(1019, "depth_mm", Fmt.F8, "mm"),
    Var(1020, "dwell_s", Fmt.F8, "s"),
    Var(1021, "immersed_s", Fmt.F8, "s"),
    Var(1022, "agent", Fmt.A),
    Var(1023, "what", Fmt.A),
    Var(1024, "dips_before", Fmt.U4),
    Var(1025, "units_done", Fmt.U4),
    Var(1026, "units_rejected", Fmt.U4),
)
DV_BY_ID = {v.id: v for v in DVS}


def is_vid(vid: int) -> bool:
    return vid in SV_BY_ID or vid in DV_BY_ID


# ---------------------------------------------------------------------- alarms

#: (ALID, alarm code, ALCD category): 1 personal safety, 2 equipment safety, 4 parameter control
#: error, 6 equipment status warning (SEMI E5 ALCD bits 1-7).
ALARMS: tuple[tuple[int, str, int], ...] = (
    (1, "estop", 1),
    (2, "high_limit", 2),
    (3, "io_comm_lost", 2),
    (4, "holder_stall", 2),
    (5, "holder_comm_lost", 2),
    (6, "internal_error", 2),
    (7, "trip", 2),
    (8, "withdraw_timeout", 4),
    (20, "door_open", 6),
    (21, "exhaust_fail", 4),
    (22, "n2_supply_low", 4),
    (23, "flux_low", 6),
    (24, "io_watchdog", 4),
    (25, "o2_analyzer", 4),
    (26, "o2_high", 6),
    (27, "vessel_dips", 6),
    (28, "flux_dips", 6),
    (29, "comm_lost", 4),
    (99, "other", 4),
)
ALID_BY_CODE = {code: alid for alid, code, _ in ALARMS}
ALARM_BY_ALID = {alid: (code, cat) for alid, code, cat in ALARMS}
OTHER_ALID = 99


def alid_of(code: str) -> int:
    return ALID_BY_CODE.get(code, OTHER_ALID)


# ---------------------------------------------------------------------- equipment constants


@dataclass(frozen=True)
class Ec:
    id: int
    name: str
    fmt: Fmt
    min: int
    max: int
    default: int
    units: str = ""


ECS: tuple[Ec, ...] = (
    Ec(2001, "EstablishCommunicationsTimeout", Fmt.U2, 1, 240, 10, "s"),
    Ec(2002, "TimeFormat", Fmt.U1, 0, 2, 1),
    #: 0: the spool goes out by itself, in order, when the host is back; 1: it waits for the
    #: host's S6F23 (transmit or purge), new events queued behind it (SEMI E30 strictly).
    Ec(2003, "SpoolTransmitOnRequest", Fmt.U1, 0, 1, 0),
)
EC_BY_ID = {e.id: e for e in ECS}


# ---------------------------------------------------------------------- values as items


def value_item(var: Var | Ec, value: Any) -> Item:
    """A variable's value in its format; None (no value now) is a zero-length item."""
    fmt = var.fmt
    if value is None:
        return Item(fmt, "" if fmt is Fmt.A else ())
    if fmt is Fmt.A:
        text = str(value)
        # A items are ASCII: anything else is shown as '?', never a refused message.
        return Item(Fmt.A, text.encode("ascii", "replace").decode("ascii"))
    if fmt is Fmt.F8:
        return num(fmt, float(value))
    try:
        return num(fmt, int(value))
    except (TypeError, ValueError) as exc:
        raise SecsFormatError(f"{var.name}: {value!r} is not a number") from exc
