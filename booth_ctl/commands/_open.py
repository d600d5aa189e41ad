"""The command authority as the supervisor runs it: over the opened, settled record store."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from booth_ctl.commands._authority import Authority
from booth_ctl.commands._execute import CommandTarget
from booth_ctl.commands._recipes import RecipeBook, recipe_check
from booth_ctl.config._booth import LoadedConfig
from booth_ctl.records import Records, RecordStore

log = logging.getLogger("booth_ctl.commands")


@contextlib.asynccontextmanager
async def open_authority(
    loaded: LoadedConfig, controller: CommandTarget, ready: asyncio.Event
) -> AsyncIterator[tuple[Records, Authority]]:
    """The record store, its thread and the one command authority over ``controller``.

    Opens the store (migrating it), records jobs a crash left running as aborted (their
    ``job_aborted`` events go out first) and commands it left running as cut short, then gives
    the authority to every link until the block ends. Set ``ready`` once the runtime's first
    complete process image and status are out: until then commands are refused ``not_ready``.
    """
    cfg = loaded.config
    store = RecordStore(
        loaded.resolve(cfg.records.path), request_id_keep_s=cfg.mqtt.request_id_keep_s
    )
    try:
        aborted = store.mark_aborted_jobs_at_start()
        if aborted:
            log.warning("jobs cut short by the last stop, recorded aborted: %s", ", ".join(aborted))
        cut_short = store.settle_commands_at_start()
        if cut_short:
            log.warning(
                "commands cut short by the last stop (a repeat is told so, not run again): "
                "request_id %s", ", ".join(cut_short),
            )
        async with Records(store) as records:
            book = RecipeBook(loaded.resolve(cfg.records.recipes_dir), store)
            yield records, Authority(controller, records, book, recipe_check(cfg), ready=ready)
    finally:
        store.close()
