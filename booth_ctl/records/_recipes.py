"""Every recipe version a command stored, with its hash."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from booth_ctl.records._base import Database, dumps


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



class RecipeStore(Database):
    def store_recipe(self, name: str, body: Mapping[str, Any], source: str) -> RecipeVersion:
        """Keep this version of a recipe (a no-op if this exact content is already stored)."""
        h = recipe_hash(body)
        now = round(time.time(), 3)
        with self._tx() as c:
            c.execute(
                "INSERT OR IGNORE INTO recipes (name, hash, body, source, stored_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (name, h, dumps(dict(body)), source, now),
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

