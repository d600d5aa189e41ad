"""The record store: SQLite in WAL mode with synchronous=FULL, so a committed record survives a
power cut and a kill -9.

Everything on record goes through here, one part per reason of change: the events outbox
(:mod:`._outbox`; ``seq`` rising by exactly one, kept across restarts), the jobs, units and dips
derived from those events in the same transaction (:mod:`._lots`, read back by
:mod:`._lot_reads`), the alarm history, the command audit (:mod:`._audit`; it also answers
repeated ``request_id``\\ s) with the control mode, and every stored recipe version with its hash
(:mod:`._recipes`). :meth:`RecordStore.purge` deletes old audit entries and old delivered events;
the lot records are never deleted.

The calls are blocking (a commit is an fsync). The supervisor makes them on the store's own
thread through :class:`booth_ctl.records.Records`; the CLI and tests may call them directly.
A store is used by one thread at a time; a lock keeps that true even if misused.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TextIO

from booth_ctl.records._audit import CommandAudit
from booth_ctl.records._lot_reads import COUNTED_EVENTS, LotReads
from booth_ctl.records._outbox import EventsOutbox
from booth_ctl.records._recipes import RecipeStore

_DAY_S = 86_400.0


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


class RecordStore(EventsOutbox, LotReads, CommandAudit, RecipeStore):
    """One SQLite database of the booth's records; opening it applies the schema migrations."""

    def __enter__(self) -> RecordStore:
        return self

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
          An undelivered event is never deleted, nor one past the cursor of a link that keeps
          its own (``link_cursors``: the GEM link's spool). ``seq`` keeps rising after a purge
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
            # The WHERE repeats the partial index's (events_prunable) so SQLite can use it. An
            # event a link with its own cursor (SECS/GEM) has not sent yet is its spool: kept.
            events = c.execute(
                "DELETE FROM events WHERE seq IN (SELECT seq FROM events "
                f"WHERE type NOT IN ({kept}) AND ts < ? AND delivered = 1 "
                "AND seq <= COALESCE((SELECT MIN(seq) FROM link_cursors), seq) "
                "ORDER BY ts LIMIT ?)",
                (events_before, cap),
            ).rowcount
        return Purged(int(commands), int(events))



def export_lot_csv(store: RecordStore, lot_id: str, out: TextIO) -> int:
    """``boothctl records export --lot L``: the lot's units and dips as CSV on ``out``."""
    return store.export_lot_csv(lot_id, out)
