"""The lot records written from the events: jobs, units and dips (and jobs a crash cut short)."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from typing import Any

from booth_ctl.records._base import Database, dumps, num

#: Reason written on a job that was still running when the supervisor started.
CRASH_ABORT_REASON = "supervisor restarted while the job was running"


class LotRecords(Database):
    def _running_job(self, c: sqlite3.Connection, lot_id: Any) -> int | None:
        if isinstance(lot_id, str):
            row = c.execute(
                "SELECT id FROM jobs WHERE state = 'running' AND lot_id = ? ORDER BY id DESC",
                (lot_id,),
            ).fetchone()
        else:
            row = c.execute(
                "SELECT id FROM jobs WHERE state = 'running' ORDER BY id DESC"
            ).fetchone()
        return int(row[0]) if row else None

    def _current_unit(self, c: sqlite3.Connection, job_id: int, unit: Any) -> int | None:
        if isinstance(unit, int) and not isinstance(unit, bool):
            return unit
        row = c.execute("SELECT MAX(unit) FROM units WHERE job_id = ?", (job_id,)).fetchone()
        return int(row[0]) if row and row[0] is not None else None

    def _apply_job_event(
        self, c: sqlite3.Connection, type_: str, data: Mapping[str, Any], ts: float
    ) -> None:
        lot_id = data.get("lot_id")
        if type_ == "job_started":
            job_id = self._running_job(c, lot_id)
            recipe = data.get("recipe")
            units = data.get("units")
            if job_id is None:
                c.execute(
                    "INSERT INTO jobs (lot_id, recipe_name, recipe_hash, units, state, started_at) "
                    "VALUES (?, ?, ?, ?, 'running', ?)",
                    (
                        str(lot_id or ""),
                        recipe if isinstance(recipe, str) else None,
                        data.get("recipe_hash"),
                        units if isinstance(units, int) else None,
                        ts,
                    ),
                )
            else:
                c.execute(
                    "UPDATE jobs SET started_at = ?, "
                    "units = COALESCE(units, ?), recipe_name = COALESCE(recipe_name, ?) "
                    "WHERE id = ?",
                    (
                        ts,
                        units if isinstance(units, int) else None,
                        recipe if isinstance(recipe, str) else None,
                        job_id,
                    ),
                )
            return
        job_id = self._running_job(c, lot_id)
        if job_id is None:
            return  # nothing running to attach it to (the event itself is still in the outbox)
        unit = data.get("unit")
        if type_ == "unit_started":
            number = self._current_unit(c, job_id, unit)
            if not isinstance(unit, int):
                number = (number or 0) + 1
            c.execute(
                "INSERT OR IGNORE INTO units (job_id, unit, started_at) VALUES (?, ?, ?)",
                (job_id, number, ts),
            )
        elif type_ == "dip":
            c.execute(
                "INSERT INTO dips (job_id, unit, vessel, o2_ppm, solder_temp_c, depth_mm, dwell_s, "
                "entered_at, withdrawn_at, recorded_at, data) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    job_id,
                    self._current_unit(c, job_id, unit),
                    data.get("vessel"),
                    num(data.get("o2_ppm")),
                    num(data.get("solder_temp_c")),
                    num(data.get("depth_mm")),
                    num(data.get("dwell_s")),
                    # The controller reports a dip as the part enters: that instant, unless given.
                    num(data.get("entered_at")) or ts,
                    num(data.get("withdrawn_at")),
                    ts,
                    dumps(dict(data)),
                ),
            )
        elif type_ == "dip_withdrawn":
            # The part is out: its dip (the newest of that vessel in this unit) gets the time.
            c.execute(
                "UPDATE dips SET withdrawn_at = ?, data = json_set(data, '$.immersed_s', ?) "
                "WHERE id = (SELECT id FROM dips WHERE job_id = ? AND unit IS ? AND vessel IS ? "
                "AND withdrawn_at IS NULL ORDER BY id DESC LIMIT 1)",
                (
                    ts,
                    num(data.get("immersed_s")),
                    job_id,
                    self._current_unit(c, job_id, unit),
                    data.get("vessel"),
                ),
            )
        elif type_ in ("unit_completed", "unit_rejected"):
            number = self._current_unit(c, job_id, unit)
            if number is None:
                return
            c.execute(
                "INSERT OR IGNORE INTO units (job_id, unit, started_at) VALUES (?, ?, ?)",
                (job_id, number, ts),
            )
            c.execute(
                "UPDATE units SET ended_at = ?, outcome = ?, reject_reason = ? "
                "WHERE job_id = ? AND unit = ?",
                (
                    ts,
                    "completed" if type_ == "unit_completed" else "rejected",
                    data.get("reason") if type_ == "unit_rejected" else None,
                    job_id,
                    number,
                ),
            )
        else:
            outcome = "completed" if type_ == "job_completed" else "aborted"
            self._end_job(c, job_id, outcome, data.get("reason"), ts)

    @staticmethod
    def _end_job(c: sqlite3.Connection, job_id: int, outcome: str, reason: Any, ts: float) -> None:
        c.execute(
            "UPDATE jobs SET state = ?, outcome = ?, reason = ?, ended_at = ? WHERE id = ?",
            (outcome, outcome, reason if isinstance(reason, str) else None, ts, job_id),
        )
        if outcome == "aborted":
            c.execute(
                "UPDATE units SET outcome = 'aborted', ended_at = ? "
                "WHERE job_id = ? AND outcome IS NULL",
                (ts, job_id),
            )

    def job_accepted(
        self, lot_id: str, recipe_name: str, recipe_hash: str | None, units: int
    ) -> None:
        """A start_job was accepted: note the recipe version the job runs.

        Works before or after the controller's ``job_started`` event is recorded.
        """
        with self._tx() as c:
            job_id = self._running_job(c, lot_id)
            if job_id is None:
                c.execute(
                    "INSERT INTO jobs (lot_id, recipe_name, recipe_hash, units, state) "
                    "VALUES (?, ?, ?, ?, 'running')",
                    (lot_id, recipe_name, recipe_hash, units),
                )
            else:
                c.execute(
                    "UPDATE jobs SET recipe_name = ?, recipe_hash = ?, units = ? WHERE id = ?",
                    (recipe_name, recipe_hash, units, job_id),
                )
