"""``boothctl run``: the records, the MES link, the supervisor and the metrics endpoint, started and
stopped together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

from ._config import LoadedConfig
from ._controller import Controller
from ._events import Event
from ._mes import records_and_link
from ._metrics import BoothCollector, MetricsServer, outbox_depth_of
from ._recorder import Records
from ._runtime import Supervisor

log = logging.getLogger("booth_ctl")
#: The journal gets one line per event of these kinds (the MES gets every event anyway).
events_log = logging.getLogger("booth_ctl.events")

#: Event types worth a line in the journal, and at which level. Dips and unit steps are not:
#: the lot records hold them, and a busy booth would flood the journal.
EVENT_LEVELS: Mapping[str, int] = {
    "state_changed": logging.INFO,
    "alarm_set": logging.WARNING,
    "alarm_cleared": logging.INFO,
    "job_started": logging.INFO,
    "job_completed": logging.INFO,
    "job_aborted": logging.WARNING,
    "unit_rejected": logging.WARNING,
}


class LoggedEvents:
    """The runtime's event sink: one journal line per notable event, then the record store."""

    def __init__(self, records: Records) -> None:
        self._records = records

    async def put(self, event: Event) -> None:
        level = EVENT_LEVELS.get(event.type)
        if level is not None:
            events_log.log(level, "%s %s", event.type, _fields(event.data))
        await self._records.put(event)


def _fields(data: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in data.items())


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
        supervisor = Supervisor(
            loaded, controller=controller, events=LoggedEvents(records), status=link
        )
        async with contextlib.AsyncExitStack() as stack:
            metrics = loaded.config.metrics
            if metrics is not None:
                collector = BoothCollector(
                    supervisor,
                    link=link,
                    outbox_depth=lambda: outbox_depth_of(records),
                    devices=lambda: supervisor.devices.devices if supervisor.devices else {},
                )
                try:
                    await stack.enter_async_context(MetricsServer(metrics, collector))
                except OSError as exc:
                    # Metrics are for people; the booth runs without them.
                    log.error(
                        "metrics.port %s:%d: cannot listen: %s", metrics.host, metrics.port, exc
                    )
            await supervisor.run(stop)
    log.info("supervisor stopped")
