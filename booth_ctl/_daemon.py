"""``boothctl run``: the records, the MES link and the supervisor, started and stopped together."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from ._config import LoadedConfig
from ._controller import Controller
from ._mes import records_and_link
from ._runtime import Supervisor

log = logging.getLogger("booth_ctl")


async def run_daemon(
    loaded: LoadedConfig, install_stop: Callable[[asyncio.Event], None] | None = None
) -> None:
    """Run until ``stop`` is set (by the signal handlers ``install_stop`` installs).

    The controller starts ``stopped`` with its outputs safe: nothing moves or heats until a
    ``reset``, whatever state the booth was left in.
    """
    stop = asyncio.Event()
    if install_stop is not None:
        install_stop(stop)
    controller = Controller(loaded)
    async with records_and_link(loaded, controller) as (records, link):
        vessel_dips, flux_dips = await records.call(records.store.dip_counts)
        controller.restore_counters(vessel_dips, flux_dips)
        supervisor = Supervisor(loaded, controller=controller, events=records, status=link)
        await supervisor.run(stop)
    log.info("supervisor stopped")
