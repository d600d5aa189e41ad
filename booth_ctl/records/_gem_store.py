"""The record store's part for the links that read the events outbox on their own cursor, and the
SECS/GEM link's persisted configuration. Blocking: call through ``Records.call``."""

from __future__ import annotations

import json
import time
from typing import Any

from booth_ctl.records._store import RecordStore


def link_cursor(store: RecordStore, link: str) -> int | None:
    """The seq of the last event ``link`` delivered, or None if it never kept one."""
    with store._read() as c:
        row = c.execute("SELECT seq FROM link_cursors WHERE link = ?", (link,)).fetchone()
    return None if row is None else int(row[0])


def set_link_cursor(store: RecordStore, link: str, seq: int) -> None:
    """Delivered up to ``seq``. Never moves back (a late write of an older seq is ignored)."""
    with store._tx() as c:
        c.execute(
            "INSERT INTO link_cursors (link, seq) VALUES (?, ?) "
            "ON CONFLICT (link) DO UPDATE SET seq = MAX(seq, excluded.seq)",
            (link, int(seq)),
        )


def reset_link_cursor(store: RecordStore, link: str, seq: int) -> None:
    """Put the cursor at ``seq`` whatever it was (a purge of a link's spool)."""
    with store._tx() as c:
        c.execute(
            "INSERT OR REPLACE INTO link_cursors (link, seq) VALUES (?, ?)", (link, int(seq))
        )


def events_after(store: RecordStore, seq: int, limit: int) -> list[dict[str, Any]]:
    """Stored events after ``seq``, oldest first (delivered to MQTT or not)."""
    return store.events(seq, limit)


def gem_settings(store: RecordStore) -> dict[str, Any]:
    with store._read() as c:
        rows = c.execute("SELECT key, value FROM gem_settings").fetchall()
    return {str(k): json.loads(v) for k, v in rows}


def put_gem_settings(store: RecordStore, values: dict[str, Any]) -> None:
    """Store these keys (one transaction: a host's change is kept whole or not at all)."""
    now = round(time.time(), 3)
    with store._tx() as c:
        c.executemany(
            "INSERT OR REPLACE INTO gem_settings (key, value, changed_at) VALUES (?, ?, ?)",
            [(k, json.dumps(v, separators=(",", ":")), now) for k, v in values.items()],
        )
