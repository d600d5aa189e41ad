"""Reading the lot records back: a job with its units and dips, the CSV export, the dip counters
and the alarm history."""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Iterable
from typing import Any, TextIO

from booth_ctl.records._base import Database

#: Event types :meth:`LotReads.dip_counts` rebuilds the dip counters from: never purged.
COUNTED_EVENTS = ("dip", "flux_dip", "refreshed")
#: The keys of what the reads return, in the order of their SELECTs' columns.
JOB_KEYS = (
    "job_id", "lot_id", "recipe", "recipe_hash", "units", "state", "started_at", "ended_at",
    "outcome", "reason",
)
UNIT_KEYS = ("unit", "started_at", "ended_at", "outcome", "reject_reason")
#: ``immersed_s``: how long the part was in, on the scan's clock (None until it is out).
DIP_KEYS = (
    "unit", "vessel", "o2_ppm", "solder_temp_c", "depth_mm", "dwell_s", "entered_at",
    "withdrawn_at", "recorded_at", "immersed_s",
)
ALARM_KEYS = ("id", "code", "severity", "text", "set_at", "cleared_at")


class LotReads(Database):
    def get_job(self, lot_id: str) -> dict[str, Any] | None:
        """The newest job of a lot, with its units and dips; None if the lot is unknown."""
        with self._read() as c:
            jobs = _dicts(
                c.execute(
                    "SELECT id, lot_id, recipe_name, recipe_hash, units, state, started_at, "
                    "ended_at, outcome, reason FROM jobs WHERE lot_id = ? ORDER BY id DESC LIMIT 1",
                    (lot_id,),
                ),
                JOB_KEYS,
            )
            if not jobs:
                return None
            job = jobs[0]
            units = _dicts(
                c.execute(
                    "SELECT unit, started_at, ended_at, outcome, reject_reason FROM units "
                    "WHERE job_id = ? ORDER BY unit",
                    (job["job_id"],),
                ),
                UNIT_KEYS,
            )
            dips = _dicts(
                c.execute(
                    "SELECT unit, vessel, o2_ppm, solder_temp_c, depth_mm, dwell_s, entered_at, "
                    "withdrawn_at, recorded_at, json_extract(data, '$.immersed_s') FROM dips "
                    "WHERE job_id = ? ORDER BY id",
                    (job["job_id"],),
                ),
                DIP_KEYS,
            )
        for unit in units:
            unit["dips"] = [d for d in dips if d["unit"] == unit["unit"]]
        return {**job, "unit_records": units, "dips": dips}

    def export_lot_csv(self, lot_id: str, out: TextIO) -> int:
        """Write every dip of every job of a lot as CSV (a unit without dips gets one row).

        Returns the number of data rows; 0 means the lot has no job on record.
        """
        with self._read() as c:
            rows = c.execute(
                "SELECT j.lot_id, j.id, j.recipe_name, j.recipe_hash, j.outcome, u.unit, "
                "u.outcome, u.reject_reason, d.vessel, d.o2_ppm, d.solder_temp_c, d.depth_mm, "
                "d.dwell_s, d.entered_at, d.withdrawn_at, d.recorded_at, "
                "json_extract(d.data, '$.immersed_s') "
                "FROM jobs j LEFT JOIN units u ON u.job_id = j.id "
                "LEFT JOIN dips d ON d.job_id = j.id AND d.unit IS u.unit "
                "WHERE j.lot_id = ? ORDER BY j.id, u.unit, d.id",
                (lot_id,),
            ).fetchall()
        w = csv.writer(out, lineterminator="\n")
        w.writerow(
            [
                "lot_id",
                "job_id",
                "recipe",
                "recipe_hash",
                "job_outcome",
                "unit",
                "unit_outcome",
                "reject_reason",
                "vessel",
                "o2_ppm",
                "solder_temp_c",
                "depth_mm",
                "dwell_s",
                "entered_at",
                "withdrawn_at",
                "recorded_at",
                "immersed_s",
            ]
        )
        for r in rows:
            w.writerow([*r[:13], *(_iso(t) for t in r[13:16]), r[16]])
        return len(rows)

    def dip_counts(self) -> tuple[dict[str, int], int]:
        """Solder dips per vessel and flux dips since each was last refreshed.

        For the controller's ``restore_counters`` at start. A refresh is on record as a
        ``refreshed`` event with ``{"what": <vessel> | "flux"}``.
        """
        with self._read() as c:
            last_refresh = dict(
                c.execute(
                    "SELECT json_extract(payload, '$.what'), MAX(seq) FROM events "
                    "WHERE type = 'refreshed' GROUP BY 1"
                ).fetchall()
            )
            vessels: dict[str, int] = {}
            rows = c.execute(
                "SELECT json_extract(payload, '$.vessel'), seq FROM events WHERE type = 'dip'"
            ).fetchall()
            for vessel, seq in rows:
                if isinstance(vessel, str) and seq > last_refresh.get(vessel, 0):
                    vessels[vessel] = vessels.get(vessel, 0) + 1
            flux = c.execute(
                "SELECT COUNT(*) FROM events WHERE type = 'flux_dip' AND seq > ?",
                (last_refresh.get("flux", 0),),
            ).fetchone()[0]
        return vessels, int(flux)

    # ------------------------------------------------------------------ alarms

    def alarm_history(self, limit: int = 1000) -> list[dict[str, Any]]:
        with self._read() as c:
            return _dicts(
                c.execute(
                    "SELECT alarm_id, code, severity, text, set_at, cleared_at FROM alarms "
                    "ORDER BY id DESC LIMIT ?",
                    (limit,),
                ),
                ALARM_KEYS,
            )


def _dicts(rows: Iterable[tuple[Any, ...]], keys: tuple[str, ...]) -> list[dict[str, Any]]:
    return [dict(zip(keys, row, strict=True)) for row in rows]


def _iso(ts: Any) -> str:
    if not isinstance(ts, int | float):
        return ""
    return dt.datetime.fromtimestamp(float(ts), tz=dt.UTC).isoformat(timespec="milliseconds")

