"""What a host configures in the equipment (SEMI E30): reports, event links and enables, alarm
enables, equipment constants, spooled streams, the clock offset, online/offline.

Pure: each change is checked whole (every item, or nothing, as E30 wants for S2F33/35/37 and
S2F15) and returns its acknowledge code; the link persists :meth:`settings` after each change, so
all of it survives a restart of the supervisor.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from booth_ctl.links.gem._gem_vars import ALARM_BY_ALID, CEID_NAMES, EC_BY_ID, ECS, is_vid

#: Reports and linked reports the equipment keeps at most (DRACK/LRACK 1 past these).
MAX_REPORTS = 1000
MAX_VIDS_PER_REPORT = 200
#: Streams whose primary messages may be spooled while the link is down, and their functions.
SPOOLABLE: Mapping[int, frozenset[int]] = {5: frozenset({1}), 6: frozenset({11})}

DRACK_OK, DRACK_SPACE, DRACK_FORMAT, DRACK_DEFINED, DRACK_NO_VID = 0, 1, 2, 3, 4
LRACK_OK, LRACK_SPACE, LRACK_FORMAT, LRACK_LINKED, LRACK_NO_CEID, LRACK_NO_RPTID = 0, 1, 2, 3, 4, 5
ERACK_OK, ERACK_NO_CEID = 0, 1
EAC_OK, EAC_NO_ECID, EAC_BUSY, EAC_RANGE = 0, 1, 2, 3


@dataclass
class GemState:
    reports: dict[int, list[int]] = field(default_factory=dict)
    links: dict[int, list[int]] = field(default_factory=dict)
    disabled_ceids: set[int] = field(default_factory=set)
    disabled_alids: set[int] = field(default_factory=set)
    ecs: dict[int, int] = field(default_factory=lambda: {e.id: e.default for e in ECS})
    #: Stream -> spooled functions. By default the equipment spools its events and alarms.
    spool: dict[int, set[int]] = field(
        default_factory=lambda: {s: set(f) for s, f in SPOOLABLE.items()}
    )
    clock_offset_s: float = 0.0
    #: False after S1F15 (host offline) until S1F17.
    online: bool = True

    # ------------------------------------------------------------------ persistence

    def settings(self) -> dict[str, Any]:
        return {
            "reports": {str(k): v for k, v in self.reports.items()},
            "links": {str(k): v for k, v in self.links.items()},
            "disabled_ceids": sorted(self.disabled_ceids),
            "disabled_alids": sorted(self.disabled_alids),
            "ecs": {str(k): v for k, v in self.ecs.items()},
            "spool": {str(k): sorted(v) for k, v in self.spool.items()},
            "clock_offset_s": self.clock_offset_s,
            "online": self.online,
        }

    @classmethod
    def from_settings(cls, s: Mapping[str, Any]) -> GemState:
        st = cls()
        st.reports = {int(k): [int(x) for x in v] for k, v in s.get("reports", {}).items()}
        st.links = {int(k): [int(x) for x in v] for k, v in s.get("links", {}).items()}
        st.disabled_ceids = {int(x) for x in s.get("disabled_ceids", [])}
        st.disabled_alids = {int(x) for x in s.get("disabled_alids", [])}
        for k, v in s.get("ecs", {}).items():
            if int(k) in EC_BY_ID:
                st.ecs[int(k)] = int(v)
        if "spool" in s:
            st.spool = {int(k): {int(x) for x in v} for k, v in s["spool"].items()}
        st.clock_offset_s = float(s.get("clock_offset_s", 0.0))
        st.online = bool(s.get("online", True))
        return st

    # ------------------------------------------------------------------ S2F33 / S2F35 / S2F37

    def define_reports(self, defs: list[tuple[int, list[int]]]) -> int:
        """S2F33: an empty list deletes every report; a report with no VIDs is deleted."""
        if not defs:
            self.reports.clear()
            self.links.clear()
            return DRACK_OK
        new = [r for r, vids in defs if vids]
        if len(set(new)) != len(new) or any(r in self.reports for r in new):
            return DRACK_DEFINED
        if any(not is_vid(v) for _, vids in defs for v in vids):
            return DRACK_NO_VID
        if len(self.reports) + len(new) > MAX_REPORTS or any(
            len(v) > MAX_VIDS_PER_REPORT for _, v in defs
        ):
            return DRACK_SPACE
        for rptid, vids in defs:
            if vids:
                self.reports[rptid] = list(vids)
            else:
                self.reports.pop(rptid, None)
                for ceid in list(self.links):
                    self.links[ceid] = [r for r in self.links[ceid] if r != rptid]
                    if not self.links[ceid]:
                        del self.links[ceid]
        return DRACK_OK

    def link_reports(self, defs: list[tuple[int, list[int]]]) -> int:
        """S2F35: a CEID with no RPTIDs is unlinked."""
        for ceid, rptids in defs:
            if ceid not in CEID_NAMES:
                return LRACK_NO_CEID
            if any(r not in self.reports for r in rptids):
                return LRACK_NO_RPTID
            if rptids and ceid in self.links:
                return LRACK_LINKED
        ceids = [c for c, r in defs if r]
        if len(set(ceids)) != len(ceids):
            return LRACK_LINKED
        for ceid, rptids in defs:
            if rptids:
                self.links[ceid] = list(rptids)
            else:
                self.links.pop(ceid, None)
        return LRACK_OK

    def enable_events(self, enable: bool, ceids: list[int]) -> int:
        """S2F37: an empty list means every CEID."""
        if any(c not in CEID_NAMES for c in ceids):
            return ERACK_NO_CEID
        targets = ceids or list(CEID_NAMES)
        if enable:
            self.disabled_ceids.difference_update(targets)
        else:
            self.disabled_ceids.update(targets)
        return ERACK_OK

    # ------------------------------------------------------------------ S5F3, S2F15, S2F43

    def enable_alarm(self, enable: bool, alid: int | None) -> int:
        """S5F3 (ACKC5 0 or 1); None means every alarm."""
        if alid is not None and alid not in ALARM_BY_ALID:
            return 1
        targets = [alid] if alid is not None else list(ALARM_BY_ALID)
        if enable:
            self.disabled_alids.difference_update(targets)
        else:
            self.disabled_alids.update(targets)
        return 0

    def set_ecs(self, values: Iterable[tuple[int, Any]]) -> int:
        """S2F15: all or nothing."""
        pending = list(values)
        for ecid, value in pending:
            ec = EC_BY_ID.get(ecid)
            if ec is None:
                return EAC_NO_ECID
            if isinstance(value, bool) or not isinstance(value, int):
                return EAC_RANGE
            if not ec.min <= value <= ec.max:
                return EAC_RANGE
        for ecid, value in pending:
            self.ecs[ecid] = int(value)
        return EAC_OK

    def set_spool(
        self, streams: list[tuple[int, list[int]]]
    ) -> tuple[int, list[tuple[int, int, list[int]]]]:
        """S2F43: RSPACK and the refused streams as (STRID, STRACK, FCNIDs). An empty list turns
        spooling off; a stream with no functions spools every spoolable function of it."""
        errors: list[tuple[int, int, list[int]]] = []
        new: dict[int, set[int]] = {}
        for strid, fcnids in streams:
            allowed = SPOOLABLE.get(strid)
            if strid == 1:
                errors.append((strid, 1, []))  # spooling not allowed for stream 1
                continue
            if allowed is None:
                errors.append((strid, 2, []))  # stream unknown
                continue
            secondary = [f for f in fcnids if f % 2 == 0]
            if secondary:
                errors.append((strid, 4, secondary))
                continue
            unknown = [f for f in fcnids if f not in allowed]
            if unknown:
                errors.append((strid, 3, unknown))
                continue
            new[strid] = set(fcnids) or set(allowed)
        if errors:
            return 1, errors
        self.spool = new
        return 0, []

    def spooled(self, stream: int, function: int) -> bool:
        return function in self.spool.get(stream, set())
