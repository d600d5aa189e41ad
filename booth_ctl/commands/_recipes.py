"""Recipes by name for the commands: stored versions first, then the recipes folder's files."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from booth_ctl.codes import INVALID_RECIPE, CommandRefused
from booth_ctl.commands._models import RECIPE_NAME_RE
from booth_ctl.config._booth import BoothConfig
from booth_ctl.config._recipe import Recipe, RecipeError, recipe_from_dict
from booth_ctl.records import RecordStore
from drivers import TomlError, parse_toml

#: Validates a recipe's data (raising RecipeError with every problem) and returns what the
#: controller's ``start_job`` takes.
RecipeCheck = Callable[[dict[str, Any]], Any]


def recipe_check(cfg: BoothConfig) -> RecipeCheck:
    """The booth's own recipe validation (schema, then the rules against this booth's limits)."""

    def check(data: dict[str, Any]) -> Recipe:
        return recipe_from_dict(data, cfg)

    return check


class UnknownRecipe(Exception):
    pass


@dataclass
class RecipeBook:
    """Recipes by name: stored versions put over a link first, then the recipes folder's files.

    Blocking (file and database reads): run on the records thread.
    """

    recipes_dir: Path
    store: RecordStore

    def file_names(self) -> list[str]:
        if not self.recipes_dir.is_dir():
            return []
        return sorted(
            p.stem for p in self.recipes_dir.glob("*.toml") if re.match(RECIPE_NAME_RE, p.stem)
        )

    def load(self, name: str) -> tuple[dict[str, Any], str]:
        """The recipe's data and where it came from ("mes" or "file")."""
        stored = self.store.latest_recipe(name, source="mes")
        if stored is not None:
            return stored.body, "mes"
        path = self.recipes_dir / f"{name}.toml"
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            raise UnknownRecipe(f"no recipe named {name!r}") from exc
        except OSError as exc:
            raise UnknownRecipe(f"recipe {name!r} cannot be read: {exc.strerror}") from exc
        try:
            return parse_toml(text), "file"
        except TomlError as exc:
            raise RecipeError([f"{path.name}: {exc}"]) from exc

    def listing(self) -> list[dict[str, Any]]:
        stored = self.store.recipe_versions()
        files = set(self.file_names())
        out = []
        for n in sorted(files | set(stored)):
            s = stored.get(n)
            out.append(
                {
                    "name": n,
                    "file": n in files,
                    "versions": s["versions"] if s else 0,
                    "hash": s["hash"] if s else None,
                }
            )
        return out


def invalid(name: str, exc: RecipeError) -> CommandRefused:
    n = len(exc.problems)
    return CommandRefused(
        INVALID_RECIPE,
        f"recipe {name!r} has {n} problem{'s' if n != 1 else ''}: " + "; ".join(exc.problems),
        {"problems": exc.problems},
    )
