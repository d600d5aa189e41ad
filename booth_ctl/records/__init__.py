"""The record store (SQLite, WAL): lots, units, dips, alarms, recipes, the events outbox and the
command audit. Imports nothing of ``booth_ctl`` but its own modules.
"""

from booth_ctl.records._audit import DEFAULT_MODE, MODES, Mode, ReplyReader
from booth_ctl.records._base import RecordError
from booth_ctl.records._lot_reads import COUNTED_EVENTS
from booth_ctl.records._lots import CRASH_ABORT_REASON
from booth_ctl.records._migrations import MIGRATIONS, SchemaError, migrate, schema_version
from booth_ctl.records._outbox import StoredEvent
from booth_ctl.records._recipes import RecipeVersion, recipe_hash
from booth_ctl.records._recorder import Records
from booth_ctl.records._store import Purged, RecordStore, export_lot_csv

__all__ = [
    "COUNTED_EVENTS",
    "CRASH_ABORT_REASON",
    "DEFAULT_MODE",
    "MIGRATIONS",
    "MODES",
    "Mode",
    "Purged",
    "RecipeVersion",
    "RecordError",
    "RecordStore",
    "Records",
    "ReplyReader",
    "SchemaError",
    "StoredEvent",
    "export_lot_csv",
    "migrate",
    "recipe_hash",
    "schema_version",
]
