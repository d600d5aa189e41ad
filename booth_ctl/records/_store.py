"""The record store: SQLite in WAL mode with synchronous=FULL, so a committed record survives a
power cut and a kill -9.

Everything on record goes through here: the events outbox (``seq`` rising by exactly one, kept
across restarts), the jobs, units and dips derived from those events in the same transaction,
the alarm history, the command audit (which also answers repeated ``request_id``\\ s), every stored
recipe version with its hash, and the control mode. :meth:`RecordStore.purge` deletes old audit
entries and old delivered events; the lot records are never deleted.

The calls are blocking (a commit is an fsync). The supervisor makes them on the store's own
thread through :class:`booth_ctl._recorder.Records`; the CLI and tests may call them directly.
A store is used by one thread at a time; a lock keeps that true even if misused.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TextIO

from booth_ctl.records._migrations import migrate

#: A writer waits this long for another process's write lock before giving up.
BUSY_TIMEOUT_MS = 5_000
#: Reason written on a job that was still running when the supervisor started.
CRASH_ABORT_REASON = "supervisor restarted while the job was running"
MODES = ("remote", "local")
Mode = Literal["remote", "local"]
#: A fresh store starts in this mode (the MES runs the booth unless an operator takes it).
DEFAULT_MODE: Mode = "remote"

#: Event types :meth:`RecordStore.dip_counts` rebuilds the dip counters from: never purged.
COUNTED_EVENTS = ("dip", "flux_dip", "refreshed")
_DAY_S = 86_400.0

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


class RecordError(Exception):
    """The record store cannot be opened or used."""


@dataclass(frozen=True, slots=True)
class StoredEvent:
    seq: int
    #: The event as published: ``{"seq", "type", "ts", ...}`` serialised once, at record time.
    payload: str


@dataclass(frozen=True, slots=True)
class Purged:
    """What one :meth:`RecordStore.purge` deleted."""

    #: Command audit entries.
    commands: int = 0
    #: Delivered events.
    events: int = 0

    def __add__(self, other: Purged) -> Purged:
        return Purged(self.commands + other.commands, self.events + other.events)

    def __bool__(self) -> bool:
        return bool(self.commands or self.events)


@dataclass(frozen=True, slots=True)
class RecipeVersion:
    name: str
    hash: str
    version: int
    source: str
    stored_at: float
    body: dict[str, Any]


def recipe_hash(body: Mapping[str, Any]) -> str:
    """A stable hash of a recipe's content (independent of key order and formatting)."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, default=str)


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


class RecordStore:
    """One SQLite database; opening it applies the schema migrations."""

    def __init__(self, path: str | Path, *, request_id_keep_s: float = 86_400.0) -> None:
        self.path = Path(path)
        self.request_id_keep_s = request_id_keep_s
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Autocommit mode: transactions are explicit (BEGIN IMMEDIATE ... COMMIT).
            self._conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=0
            )
        except (OSError, sqlite3.Error) as exc:
            raise RecordError(f"cannot open record store {self.path}: {exc}") from exc
        try:
            self._conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise RecordError(f"record store {self.path}: cannot use WAL (journal mode {mode})")
            self._conn.execute("PRAGMA synchronous = FULL")
            self._conn.execute("PRAGMA foreign_keys = ON")
            migrate(self._conn)
        except sqlite3.Error as exc:
            self._conn.close()
            raise RecordError(f"record store {self.path}: {exc}") from exc
        except BaseException:
            self._conn.close()
            raise

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> RecordStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; durable (fsynced) when the block ends without error."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            yield self._conn

    def pragma(self, name: str) -> Any:
        """The value of a read-only PRAGMA (journal_mode, synchronous, integrity_check, ...)."""
        if not name.replace("_", "").isalpha():
            raise ValueError(f"not a pragma name: {name!r}")
        with self._read() as c:
            return c.execute(f"PRAGMA {name}").fetchone()[0]

    # ------------------------------------------------------------------ events (the outbox)

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
        c.execute("UPDATE events SET payload = ? WHERE seq = ?", (_dumps(payload), seq))
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

    # ------------------------------------------------------------------ jobs, units, dips

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
                    _num(data.get("o2_ppm")),
                    _num(data.get("solder_temp_c")),
                    _num(data.get("depth_mm")),
                    _num(data.get("dwell_s")),
                    # The controller reports a dip as the part enters: that instant, unless given.
                    _num(data.get("entered_at")) or ts,
                    _num(data.get("withdrawn_at")),
                    ts,
                    _dumps(dict(data)),
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
                    _num(data.get("immersed_s")),
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

    def get_job(self, lot_id: str) -> dict[str, Any] | None:
        """The newest job of a lot, with its units and dips; None if the lot is unknown."""
        with self._read() as c:
            row = c.execute(
                "SELECT id, lot_id, recipe_name, recipe_hash, units, state, started_at, ended_at, "
                "outcome, reason FROM jobs WHERE lot_id = ? ORDER BY id DESC LIMIT 1",
                (lot_id,),
            ).fetchone()
            if row is None:
                return None
            job_id = int(row[0])
            units = c.execute(
                "SELECT unit, started_at, ended_at, outcome, reject_reason FROM units "
                "WHERE job_id = ? ORDER BY unit",
                (job_id,),
            ).fetchall()
            dips = c.execute(
                "SELECT unit, vessel, o2_ppm, solder_temp_c, depth_mm, dwell_s, entered_at, "
                "withdrawn_at, recorded_at, json_extract(data, '$.immersed_s') FROM dips "
                "WHERE job_id = ? ORDER BY id",
                (job_id,),
            ).fetchall()
        dip_dicts = [
            {
                "unit": d[0],
                "vessel": d[1],
                "o2_ppm": d[2],
                "solder_temp_c": d[3],
                "depth_mm": d[4],
                "dwell_s": d[5],
                "entered_at": d[6],
                "withdrawn_at": d[7],
                "recorded_at": d[8],
                #: How long the part was in, on the scan's clock (None until it is out).
                "immersed_s": d[9],
            }
            for d in dips
        ]
        return {
            "job_id": job_id,
            "lot_id": row[1],
            "recipe": row[2],
            "recipe_hash": row[3],
            "units": row[4],
            "state": row[5],
            "started_at": row[6],
            "ended_at": row[7],
            "outcome": row[8],
            "reason": row[9],
            "unit_records": [
                {
                    "unit": u[0],
                    "started_at": u[1],
                    "ended_at": u[2],
                    "outcome": u[3],
                    "reject_reason": u[4],
                    "dips": [d for d in dip_dicts if d["unit"] == u[0]],
                }
                for u in units
            ],
            "dips": dip_dicts,
        }

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
            rows = c.execute(
                "SELECT alarm_id, code, severity, text, set_at, cleared_at FROM alarms "
                "ORDER BY id DESC LIMIT ?",
                (limit,),
            ).fetchall()
        keys = ("id", "code", "severity", "text", "set_at", "cleared_at")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    # ------------------------------------------------------------------ recipes

    def store_recipe(self, name: str, body: Mapping[str, Any], source: str) -> RecipeVersion:
        """Keep this version of a recipe (a no-op if this exact content is already stored)."""
        h = recipe_hash(body)
        now = round(time.time(), 3)
        with self._tx() as c:
            c.execute(
                "INSERT OR IGNORE INTO recipes (name, hash, body, source, stored_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (name, h, _dumps(dict(body)), source, now),
            )
            row = c.execute(
                "SELECT id, source, stored_at FROM recipes WHERE name = ? AND hash = ?", (name, h)
            ).fetchone()
            version = c.execute(
                "SELECT COUNT(*) FROM recipes WHERE name = ? AND id <= ?", (name, row[0])
            ).fetchone()[0]
        return RecipeVersion(name, h, int(version), str(row[1]), float(row[2]), dict(body))

    def latest_recipe(self, name: str, *, source: str | None = None) -> RecipeVersion | None:
        """The newest stored version of a recipe (optionally only those from ``source``)."""
        with self._read() as c:
            row = c.execute(
                "SELECT hash, source, stored_at, body, "
                "(SELECT COUNT(*) FROM recipes r2 WHERE r2.name = r.name AND r2.id <= r.id) "
                "FROM recipes r WHERE name = ? AND (? IS NULL OR source = ?) "
                "ORDER BY id DESC LIMIT 1",
                (name, source, source),
            ).fetchone()
        if row is None:
            return None
        return RecipeVersion(
            name, str(row[0]), int(row[4]), str(row[1]), float(row[2]), json.loads(row[3])
        )

    def recipe_versions(self) -> dict[str, dict[str, Any]]:
        """Per stored recipe name: how many versions, the newest hash and its source."""
        with self._read() as c:
            rows = c.execute(
                "SELECT name, COUNT(*), "
                "(SELECT hash FROM recipes r2 WHERE r2.name = r.name ORDER BY id DESC LIMIT 1), "
                "(SELECT source FROM recipes r2 WHERE r2.name = r.name ORDER BY id DESC LIMIT 1) "
                "FROM recipes r GROUP BY name ORDER BY name"
            ).fetchall()
        return {n: {"versions": int(k), "hash": h, "source": s} for n, k, h, s in rows}

    # ------------------------------------------------------------------ command audit

    def get_reply(self, request_id: str, now: float | None = None) -> dict[str, Any] | None:
        """The reply already given to this request_id, if it is younger than the keep time.

        For a command still on record as running (the booth stopped, or its reply could not be
        written, while it ran) this is the reply saying it was cut short.
        """
        since = (time.time() if now is None else now) - self.request_id_keep_s
        with self._read() as c:
            return _first_reply(c, request_id, since, final_only=False)

    def record_command(
        self,
        request_id: str,
        command: str,
        args: Mapping[str, Any],
        *,
        who: str,
        reply: Mapping[str, Any],
        now: float | None = None,
    ) -> None:
        """Audit one answered command with the reply it got (also its duplicate guard).

        The audit keeps every entry; a reply answers a repeated request_id only while it is
        younger than the keep time.
        """
        ts = round(time.time() if now is None else now, 3)
        with self._tx() as c:
            c.execute(
                "INSERT INTO commands (request_id, command, args, who, received_at, reply) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (request_id, command, _dumps(dict(args)), who, ts, _dumps(dict(reply))),
            )

    def command_started(
        self,
        request_id: str,
        command: str,
        args: Mapping[str, Any],
        *,
        who: str,
        cut_short_reply: Mapping[str, Any],
        now: float | None = None,
    ) -> int:
        """Put a command on record as running, before it runs; return its entry for
        :meth:`command_done`.

        Until it is done, a repeat of its request_id gets ``cut_short_reply``: should the booth
        stop (or the store fail) between running it and recording its reply, it is not run twice.
        """
        ts = round(time.time() if now is None else now, 3)
        with self._tx() as c:
            cur = c.execute(
                "INSERT INTO commands (request_id, command, args, who, received_at, reply, state) "
                "VALUES (?, ?, ?, ?, ?, ?, 'running')",
                (request_id, command, _dumps(dict(args)), who, ts, _dumps(dict(cut_short_reply))),
            )
        return int(cur.lastrowid or 0)

    def command_done(self, entry: int, reply: Mapping[str, Any]) -> None:
        """The command of ``entry`` (from :meth:`command_started`) ran and got ``reply``."""
        with self._tx() as c:
            c.execute(
                "UPDATE commands SET reply = ?, state = 'done' WHERE id = ?",
                (_dumps(dict(reply)), entry),
            )

    def settle_commands_at_start(self) -> list[str]:
        """Commands a crash left running are recorded as cut short; return their request_ids.

        Call once at start. Their repeats keep getting the reply saying they were cut short.
        """
        with self._tx() as c:
            rows = c.execute(
                "SELECT request_id FROM commands WHERE state = 'running' ORDER BY id"
            ).fetchall()
            c.execute("UPDATE commands SET state = 'cut_short' WHERE state = 'running'")
        return [str(r[0]) for r in rows]

    def reply_reader(self) -> ReplyReader:
        """A second, read-only connection for looking up first replies (see ReplyReader)."""
        return ReplyReader(self.path, request_id_keep_s=self.request_id_keep_s)

    def purge(
        self,
        *,
        audit_keep_days: float,
        events_keep_days: float,
        now: float | None = None,
        limit: int | None = None,
    ) -> Purged:
        """Delete what the records no longer need (maintenance, hourly); say how much went.

        - Command audit entries older than ``audit_keep_days`` — never one still ``running``
          (its reply is yet to be written), and never one younger than the request_id keep
          time (the answer to a repeat), whatever ``audit_keep_days`` says. Reads (``get_*``,
          ``list_*``) go once they are past the request_id keep time.
        - Events the broker acknowledged (delivered) older than ``events_keep_days``, except
          the ``dip``, ``flux_dip`` and ``refreshed`` events :meth:`dip_counts` is built from.
          An undelivered event is never deleted. ``seq`` keeps rising after a purge
          (AUTOINCREMENT never hands out a number again).

        Jobs, units, dips, the alarm history, recipe versions and the control mode are never
        deleted. ``limit`` bounds the rows deleted per table in this call (one short
        transaction; call again while a count reaches it). Deleted pages are reused by SQLite
        for new rows; the file does not shrink by itself.
        """
        t = time.time() if now is None else now
        audit_before = t - max(audit_keep_days * _DAY_S, self.request_id_keep_s)
        events_before = t - events_keep_days * _DAY_S
        cap = -1 if limit is None else max(0, int(limit))  # LIMIT -1: no limit
        kept = ", ".join(f"'{k}'" for k in COUNTED_EVENTS)
        with self._tx() as c:
            commands = c.execute(
                "DELETE FROM commands WHERE id IN (SELECT id FROM commands "
                "WHERE received_at < ? AND state != 'running' ORDER BY received_at LIMIT ?)",
                (audit_before, cap),
            ).rowcount
            # Reads change nothing: a status poll once a second would otherwise keep millions
            # of rows. They are kept only as long as a repeat of their request_id is answered.
            commands += c.execute(
                "DELETE FROM commands WHERE id IN (SELECT id FROM commands "
                "WHERE received_at < ? AND state != 'running' "
                "AND (command LIKE 'get\\_%' ESCAPE '\\' OR command LIKE 'list\\_%' ESCAPE '\\') "
                "ORDER BY received_at LIMIT ?)",
                (t - self.request_id_keep_s, cap),
            ).rowcount
            # The WHERE repeats the partial index's (events_prunable) so SQLite can use it.
            events = c.execute(
                "DELETE FROM events WHERE seq IN (SELECT seq FROM events "
                f"WHERE type NOT IN ({kept}) AND ts < ? AND delivered = 1 ORDER BY ts LIMIT ?)",
                (events_before, cap),
            ).rowcount
        return Purged(int(commands), int(events))

    def command_audit(self, limit: int = 1000) -> list[dict[str, Any]]:
        with self._read() as c:
            rows = c.execute(
                "SELECT request_id, command, args, who, received_at, reply, state FROM commands "
                "ORDER BY id DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [
            {
                "request_id": r[0],
                "command": r[1],
                "args": json.loads(r[2]),
                "who": r[3],
                "received_at": r[4],
                "reply": json.loads(r[5]),
                #: done, running (now, or a crash cut it short), cut_short (found so at start)
                "state": r[6],
            }
            for r in rows
        ]

    # ------------------------------------------------------------------ control mode

    def get_mode(self) -> Mode:
        with self._read() as c:
            row = c.execute("SELECT value FROM settings WHERE key = 'mode'").fetchone()
        value = row[0] if row else DEFAULT_MODE
        return "local" if value == "local" else "remote"

    def set_mode(self, mode: str, who: str) -> None:
        """Switch remote/local (at the booth PC); the MES link picks it up within a second."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        now = round(time.time(), 3)
        with self._tx() as c:
            c.execute(
                "INSERT OR REPLACE INTO settings (key, value, changed_at, changed_by) "
                "VALUES ('mode', ?, ?, ?)",
                (mode, now, who),
            )
            # On the audit trail like any command, under an id no MES request can collide with.
            reply = {"command": "mode", "ok": True, "error": None, "result": {"mode": mode}}
            c.execute(
                "INSERT INTO commands (request_id, command, args, who, received_at, reply) "
                "VALUES (?, 'mode', ?, ?, ?, ?)",
                (f"local:{uuid.uuid4().hex}", _dumps({"mode": mode}), who, now, _dumps(reply)),
            )


def _first_reply(
    c: sqlite3.Connection, request_id: str, since: float, *, final_only: bool
) -> dict[str, Any] | None:
    row = c.execute(
        "SELECT reply, state FROM commands WHERE request_id = ? AND received_at >= ? "
        "ORDER BY id LIMIT 1",
        (request_id, since),
    ).fetchone()
    if row is None or (final_only and row[1] == "running"):
        return None
    reply: dict[str, Any] = json.loads(row[0])
    return reply


class ReplyReader:
    """Looks up the first reply to a request_id on a connection of its own.

    The store's connection can be held for seconds by a write waiting on the database lock (or
    a slow fsync); in WAL mode a reader on another connection is not held up by that. The MES
    link uses this, on a worker thread, to answer a repeated request_id that arrives while the
    command inbox is full. Usable from any thread, one call at a time (a lock sees to it).
    """

    #: A lookup waits at most this long for a lock (WAL readers rarely wait at all).
    BUSY_TIMEOUT_MS = 200

    def __init__(self, path: str | Path, *, request_id_keep_s: float) -> None:
        self.request_id_keep_s = request_id_keep_s
        self._lock = threading.Lock()
        try:
            self._conn = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, timeout=0
            )
        except sqlite3.Error as exc:
            raise RecordError(f"cannot open record store {path} for reading: {exc}") from exc
        try:
            self._conn.execute(f"PRAGMA busy_timeout = {self.BUSY_TIMEOUT_MS}")
            self._conn.execute("PRAGMA query_only = ON")
        except BaseException:
            self._conn.close()
            raise

    def first_reply(self, request_id: str, now: float | None = None) -> dict[str, Any] | None:
        """The reply given to this request_id, or None (also while the command is running)."""
        since = (time.time() if now is None else now) - self.request_id_keep_s
        with self._lock:
            return _first_reply(self._conn, request_id, since, final_only=True)

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _iso(ts: Any) -> str:
    if not isinstance(ts, int | float):
        return ""
    return dt.datetime.fromtimestamp(float(ts), tz=dt.UTC).isoformat(timespec="milliseconds")


def export_lot_csv(store: RecordStore, lot_id: str, out: TextIO) -> int:
    """``boothctl records export --lot L``: the lot's units and dips as CSV on ``out``."""
    return store.export_lot_csv(lot_id, out)
