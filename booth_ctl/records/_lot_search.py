"""Lot search for the HMI: the newest jobs whose lot id contains some text."""

from __future__ import annotations

import sqlite3
from typing import Any

LOTS_MAX = 200


def search_lots(conn: sqlite3.Connection, text: str, limit: int = 50) -> list[dict[str, Any]]:
    """Jobs (newest first) whose lot id contains ``text`` (case-insensitive; '' lists all)."""
    limit = max(1, min(limit, LOTS_MAX))
    pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    rows = conn.execute(
        "SELECT j.lot_id, j.recipe_name, j.units, j.state, j.started_at, j.ended_at, j.outcome, "
        "(SELECT COUNT(*) FROM dips d WHERE d.job_id = j.id) FROM jobs j "
        "WHERE j.lot_id LIKE ? ESCAPE '\\' ORDER BY j.id DESC LIMIT ?",
        (pattern, limit),
    ).fetchall()
    return [
        {
            "lot_id": r[0],
            "recipe": r[1],
            "units": r[2],
            "state": r[3],
            "started_at": r[4],
            "ended_at": r[5],
            "outcome": r[6],
            "dips": r[7],
        }
        for r in rows
    ]
