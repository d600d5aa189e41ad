"""The command audit (which also answers a repeated request id) and the control mode."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from booth_ctl.records._base import Database, RecordError, dumps

MODES = ("remote", "local")
Mode = Literal["remote", "local"]
#: A fresh store starts in this mode (the MES runs the booth unless an operator takes it).
DEFAULT_MODE: Mode = "remote"


class CommandAudit(Database):
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
        link: str | None = None,
        user: str | None = None,
        role: str | None = None,
    ) -> None:
        """Audit one answered command with the reply it got (also its duplicate guard).

        The audit keeps every entry; a reply answers a repeated request_id only while it is
        younger than the keep time.
        """
        ts = round(time.time() if now is None else now, 3)
        with self._tx() as c:
            _insert(c, (request_id, command, args, who, ts, reply), "done", (link, user, role))

    def command_started(
        self,
        request_id: str,
        command: str,
        args: Mapping[str, Any],
        *,
        who: str,
        cut_short_reply: Mapping[str, Any],
        now: float | None = None,
        link: str | None = None,
        user: str | None = None,
        role: str | None = None,
    ) -> int:
        """Put a command on record as running, before it runs; return its entry for
        :meth:`command_done`.

        Until it is done, a repeat of its request_id gets ``cut_short_reply``: should the booth
        stop (or the store fail) between running it and recording its reply, it is not run twice.
        """
        ts = round(time.time() if now is None else now, 3)
        with self._tx() as c:
            return _insert(
                c, (request_id, command, args, who, ts, cut_short_reply), "running",
                (link, user, role),
            )

    def command_done(self, entry: int, reply: Mapping[str, Any]) -> None:
        """The command of ``entry`` (from :meth:`command_started`) ran and got ``reply``."""
        with self._tx() as c:
            c.execute(
                "UPDATE commands SET reply = ?, state = 'done' WHERE id = ?",
                (dumps(dict(reply)), entry),
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

    def command_audit(self, limit: int = 1000) -> list[dict[str, Any]]:
        with self._read() as c:
            rows = c.execute(
                "SELECT request_id, command, args, who, received_at, reply, state, source_link, "
                "source_user, source_role FROM commands "
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
                "source": {"link": r[7], "user": r[8], "role": r[9]},
            }
            for r in rows
        ]

    # ------------------------------------------------------------------ control mode

    def get_mode(self) -> Mode:
        with self._read() as c:
            row = c.execute("SELECT value FROM settings WHERE key = 'mode'").fetchone()
        value = row[0] if row else DEFAULT_MODE
        return "local" if value == "local" else "remote"

    def write_mode(self, mode: str, who: str) -> None:
        """Switch remote/local; the command authority audits it (``set_mode``)."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        with self._tx() as c:
            self._write_mode(c, mode, who, round(time.time(), 3))

    @staticmethod
    def _write_mode(c: sqlite3.Connection, mode: str, who: str, now: float) -> None:
        c.execute(
            "INSERT OR REPLACE INTO settings (key, value, changed_at, changed_by) "
            "VALUES ('mode', ?, ?, ?)",
            (mode, now, who),
        )

    def set_mode(
        self, mode: str, who: str, *, user: str | None = None, role: str | None = None
    ) -> None:
        """Switch remote/local at the booth PC (``boothctl mode``, without the supervisor's
        authority); on the audit trail as the CLI's, under an id no request can collide with.
        The running supervisor picks it up within a second."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        now = round(time.time(), 3)
        with self._tx() as c:
            self._write_mode(c, mode, who, now)
            reply = {"command": "mode", "ok": True, "error": None, "result": {"mode": mode}}
            entry = (f"local:{uuid.uuid4().hex}", "mode", {"mode": mode}, who, now, reply)
            _insert(c, entry, "done", ("cli", user, role))



def _insert(
    c: sqlite3.Connection,
    entry: tuple[str, str, Mapping[str, Any], str, float, Mapping[str, Any]],
    state: str,
    source: tuple[str | None, str | None, str | None],
) -> int:
    """One audit row: (request_id, command, args, who, received_at, reply), its state and its
    source (link, user, role)."""
    request_id, command, args, who, ts, reply = entry
    cur = c.execute(
        "INSERT INTO commands (request_id, command, args, who, received_at, reply, state, "
        "source_link, source_user, source_role) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (request_id, command, dumps(dict(args)), who, ts, dumps(dict(reply)), state, *source),
    )
    return int(cur.lastrowid or 0)


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
