"""The events outbox: every event stored once, ``seq`` rising by exactly one across restarts,
marked delivered when a link has it acknowledged. Storing an event also updates the lot records
and the alarm history derived from it, in the same transaction."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from booth_ctl.records._base import dumps
from booth_ctl.records._lots import CRASH_ABORT_REASON, LotRecords

_JOB_EVENTS = frozenset(
    {
        "job_started",
        "unit_started",
        "dip",
        "dip_withdrawn",
        "unit_completed",
        "unit_rejected",
        "job_completed",
        "job_aborted",
    }
)


@dataclass(frozen=True, slots=True)
class StoredEvent:
    seq: int
    #: The event as published: ``{"seq", "type", "ts", ...}`` serialised once, at record time.
    payload: str



class EventsOutbox(LotRecords):
    def record_event(self, type_: str, data: Mapping[str, Any]) -> tuple[int, float]:
        """Store one event durably; return its ``(seq, ts)``."""
        return self.record_events([(type_, data)])[0]

    def record_events(
        self, events: Iterable[tuple[str, Mapping[str, Any]]]
    ) -> list[tuple[int, float]]:
        """Store events in one transaction (one fsync), in the given order."""
        out: list[tuple[int, float]] = []
        with self._tx() as c:
            for type_, data in events:
                out.append(self._insert_event(c, type_, data))
        return out

    def _insert_event(
        self, c: sqlite3.Connection, type_: str, data: Mapping[str, Any], ts: float | None = None
    ) -> tuple[int, float]:
        ts = round(time.time() if ts is None else ts, 3)
        cur = c.execute("INSERT INTO events (type, ts, payload) VALUES (?, ?, '')", (type_, ts))
        seq = int(cur.lastrowid or 0)
        # The event's own keys cannot override the envelope.
        payload = {**data, "seq": seq, "type": type_, "ts": ts}
        c.execute("UPDATE events SET payload = ? WHERE seq = ?", (dumps(payload), seq))
        if type_ in _JOB_EVENTS:
            self._apply_job_event(c, type_, data, ts)
        elif type_ == "alarm_set":
            c.execute(
                "INSERT INTO alarms (alarm_id, code, severity, text, set_at) VALUES (?,?,?,?,?)",
                (
                    str(data.get("id", data.get("alarm_id", ""))),
                    data.get("code"),
                    data.get("severity"),
                    data.get("text"),
                    ts,
                ),
            )
        elif type_ == "alarm_cleared":
            c.execute(
                "UPDATE alarms SET cleared_at = ? WHERE alarm_id = ? AND cleared_at IS NULL",
                (ts, str(data.get("id", data.get("alarm_id", "")))),
            )
        return seq, ts

    def undelivered_events(self, after_seq: int = 0, limit: int = 500) -> list[StoredEvent]:
        """Events not yet acknowledged by the broker, oldest first."""
        with self._read() as c:
            rows = c.execute(
                "SELECT seq, payload FROM events WHERE delivered = 0 AND seq > ? "
                "ORDER BY seq LIMIT ?",
                (after_seq, limit),
            ).fetchall()
        return [StoredEvent(int(s), str(p)) for s, p in rows]

    def mark_delivered(self, upto_seq: int) -> None:
        """Every event up to and including ``upto_seq`` has been acknowledged by the broker."""
        with self._tx() as c:
            c.execute(
                "UPDATE events SET delivered = 1 WHERE delivered = 0 AND seq <= ?", (upto_seq,)
            )

    def last_seq(self) -> int:
        """The newest event's seq, also when a purge deleted it (AUTOINCREMENT remembers)."""
        with self._read() as c:
            row = c.execute(
                "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0), "
                "COALESCE((SELECT MAX(seq) FROM events), 0))"
            ).fetchone()
        return int(row[0] or 0)

    def events(self, after_seq: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        """Stored events (delivered or not), oldest first."""
        with self._read() as c:
            rows = c.execute(
                "SELECT payload FROM events WHERE seq > ? ORDER BY seq LIMIT ?", (after_seq, limit)
            ).fetchall()
        return [json.loads(p) for (p,) in rows]

    def mark_aborted_jobs_at_start(self, reason: str = CRASH_ABORT_REASON) -> list[str]:
        """Jobs a crash left running are recorded aborted, each with a ``job_aborted`` event.

        Call once at start, before anything else records events. Returns their lot ids.
        """
        lots: list[str] = []
        with self._tx() as c:
            rows = c.execute(
                "SELECT id, lot_id FROM jobs WHERE state = 'running' ORDER BY id"
            ).fetchall()
            for job_id, lot_id in rows:
                _, ts = self._insert_event(
                    c, "job_aborted", {"lot_id": lot_id, "reason": reason, "at_start": True}
                )
                # The event handler matched the newest running job of this lot; make sure this
                # very job (even a duplicate of the lot) is closed.
                self._end_job(c, int(job_id), "aborted", reason, ts)
                lots.append(str(lot_id))
        return lots

