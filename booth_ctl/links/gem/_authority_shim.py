"""A stand-in for the command authority (``booth_ctl.commands.Authority``) until it lands: the
same ``submit``/``allowed`` shape, over today's Dispatcher. Deleted when the authority merges;
the GEM link codes against the authority's interface only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from booth_ctl.commands._dispatcher import (
    COMMANDS,
    READ_ONLY_PREFIXES,
    CommandTarget,
    Dispatcher,
    RecipeBook,
    recipe_check,
)
from booth_ctl.config._booth import LoadedConfig
from booth_ctl.records._recorder import Records

Role = Literal["viewer", "operator", "engineer"]


@dataclass(frozen=True)
class Source:
    link: str
    user: str | None = None
    role: Role | None = None


class Authority:
    def __init__(self, dispatcher: Dispatcher) -> None:
        self._dispatcher = dispatcher

    async def submit(
        self, command: str, body: Mapping[str, Any], source: Source
    ) -> dict[str, Any] | None:
        payload = json.dumps(dict(body), ensure_ascii=False, default=str).encode("utf-8")
        return await self._dispatcher.handle(command, payload, who=source.link)

    async def submit_raw(
        self, command: str, payload: bytes, source: Source
    ) -> dict[str, Any] | None:
        return await self._dispatcher.handle(command, payload, who=source.link)

    def allowed(self, source: Source) -> frozenset[str]:
        return frozenset(COMMANDS) if source.role is None else frozenset(
            c for c in COMMANDS if c.startswith(READ_ONLY_PREFIXES)
        )


def authority_for(loaded: LoadedConfig, controller: CommandTarget, records: Records) -> Authority:
    """The authority over a dispatcher of the booth's own (the same records, controller and
    recipe check as the MQTT link's: one audit trail, one request-id dedupe, one mode)."""
    cfg = loaded.config
    book = RecipeBook(loaded.resolve(cfg.records.recipes_dir), records.store)
    return Authority(Dispatcher(controller, records, book, recipe_check(cfg)))
