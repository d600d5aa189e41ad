"""Versioned schema of the record store.

``PRAGMA user_version`` holds the version a database is at. Migrations are applied in order, each
in its own transaction, and never edited once shipped: a change of schema is a new entry at the end.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

#: (version, SQL script). The script of version N takes a database from N-1 to N.
MIGRATIONS: tuple[tuple[int, str], ...] = (
    (
        1,
        """
        CREATE TABLE recipes (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            hash TEXT NOT NULL,
            body TEXT NOT NULL,
            source TEXT NOT NULL,
            stored_at REAL NOT NULL,
            UNIQUE (name, hash)
        );
        CREATE TABLE jobs (
            id INTEGER PRIMARY KEY,
            lot_id TEXT NOT NULL,
            recipe_name TEXT,
            recipe_hash TEXT,
            units INTEGER,
            state TEXT NOT NULL,
            started_at REAL,
            ended_at REAL,
            outcome TEXT,
            reason TEXT
        );
        CREATE INDEX jobs_by_lot ON jobs (lot_id);
        CREATE INDEX jobs_running ON jobs (state) WHERE state = 'running';
        CREATE TABLE units (
            id INTEGER PRIMARY KEY,
            job_id INTEGER NOT NULL REFERENCES jobs (id),
            unit INTEGER NOT NULL,
            started_at REAL,
            ended_at REAL,
            outcome TEXT,
            reject_reason TEXT,
            UNIQUE (job_id, unit)
        );
        CREATE TABLE dips (
            id INTEGER PRIMARY KEY,
            job_id INTEGER NOT NULL REFERENCES jobs (id),
            unit INTEGER,
            vessel TEXT,
            o2_ppm REAL,
            solder_temp_c REAL,
            depth_mm REAL,
            dwell_s REAL,
            entered_at REAL,
            withdrawn_at REAL,
            recorded_at REAL NOT NULL,
            data TEXT NOT NULL
        );
        CREATE INDEX dips_by_job ON dips (job_id);
        CREATE TABLE alarms (
            id INTEGER PRIMARY KEY,
            alarm_id TEXT NOT NULL,
            code TEXT,
            severity TEXT,
            text TEXT,
            set_at REAL NOT NULL,
            cleared_at REAL
        );
        CREATE INDEX alarms_open ON alarms (alarm_id) WHERE cleared_at IS NULL;
        CREATE TABLE events (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            type TEXT NOT NULL,
            ts REAL NOT NULL,
            payload TEXT NOT NULL,
            delivered INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX events_undelivered ON events (seq) WHERE delivered = 0;
        CREATE TABLE commands (
            id INTEGER PRIMARY KEY,
            request_id TEXT NOT NULL,
            command TEXT NOT NULL,
            args TEXT NOT NULL,
            who TEXT NOT NULL,
            received_at REAL NOT NULL,
            reply TEXT NOT NULL
        );
        CREATE INDEX commands_by_request ON commands (request_id, received_at);
        CREATE INDEX commands_by_age ON commands (received_at);
        CREATE TABLE settings (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL,
            changed_at REAL NOT NULL,
            changed_by TEXT NOT NULL
        );
        """,
    ),
    (
        2,
        # A state-changing command is put on record as ``running`` before it runs and ``done``
        # with its reply after; a ``running`` row found at start was cut short by a crash and
        # becomes ``cut_short`` (its reply says so). Rows from version 1 are all ``done``.
        """
        ALTER TABLE commands ADD COLUMN state TEXT NOT NULL DEFAULT 'done';
        CREATE INDEX commands_running ON commands (id) WHERE state = 'running';
        """,
    ),
    (
        3,
        # The hourly purge deletes old delivered events but keeps those the dip counters are
        # rebuilt from (dip, flux_dip, refreshed; see RecordStore.purge): this index holds only
        # the others, so a purge reads the old rows it may delete, not every dip ever made.
        """
        CREATE INDEX events_prunable ON events (ts)
            WHERE type NOT IN ('dip', 'flux_dip', 'refreshed');
        """,
    ),
    (
        4,
        # The command authority audits the source of every command: the link it came in on,
        # and the person and role where that link knows them. Rows from before were the MQTT
        # link's, or ``boothctl mode``'s (who ``boothctl:<user>``).
        """
        ALTER TABLE commands ADD COLUMN source_link TEXT;
        ALTER TABLE commands ADD COLUMN source_user TEXT;
        ALTER TABLE commands ADD COLUMN source_role TEXT;
        UPDATE commands
            SET source_link = CASE WHEN who LIKE 'boothctl:%' THEN 'cli' ELSE 'mqtt' END;
        """,
    ),
    (
        5,
        # The HMI's users (booth_ctl.records._users): a scrypt hash per user, never the password;
        # the failed logins in a row and the end of a lockout live with the user, so a restart
        # of the supervisor does not lift a lockout.
        """
        CREATE TABLE hmi_users (
            name TEXT PRIMARY KEY,
            role TEXT NOT NULL,
            pw_hash TEXT NOT NULL,
            created_at REAL NOT NULL,
            changed_at REAL NOT NULL,
            failures INTEGER NOT NULL DEFAULT 0,
            locked_until REAL NOT NULL DEFAULT 0
        );
        """,
    ),
    (
        6,
        # Each link that sends the events outbox keeps how far it has delivered (its cursor);
        # the SECS/GEM link keeps its host-made configuration (reports, links, enables,
        # equipment constants, spooling) as JSON values by key.
        """
        CREATE TABLE link_cursors (
            link TEXT PRIMARY KEY,
            seq INTEGER NOT NULL
        );
        CREATE TABLE gem_settings (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL,
            changed_at REAL NOT NULL
        );
        """,
    ),
)


class SchemaError(Exception):
    """The database's schema cannot be used by this version of the software."""


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection, migrations: Sequence[tuple[int, str]] = MIGRATIONS) -> int:
    """Bring the database to the newest version; return the version it is at.

    ``conn`` must be in autocommit mode (``isolation_level=None``): each step is its own
    transaction, so a crash mid-way leaves the database at a whole version.
    """
    latest = migrations[-1][0] if migrations else 0
    current = schema_version(conn)
    if current > latest:
        raise SchemaError(
            f"record store is at schema version {current}, newer than this software knows "
            f"({latest}); refusing to touch it"
        )
    for version, script in migrations:
        if version <= current:
            continue
        if version != current + 1:
            raise SchemaError(f"schema migrations skip from version {current} to {version}")
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(script):
                conn.execute(statement)
            # PRAGMA cannot take a bound parameter; version is an int from the table above.
            conn.execute(f"PRAGMA user_version = {int(version)}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        current = version
    return current


def _statements(script: str) -> list[str]:
    """Split a script on ';' (executescript would COMMIT the open transaction)."""
    return [s.strip() for s in script.split(";") if s.strip()]
