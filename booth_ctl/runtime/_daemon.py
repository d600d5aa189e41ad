"""``boothctl run``: the records, the MES link, the supervisor and the metrics endpoint, started and
stopped together."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from booth_ctl.commands import Source
from booth_ctl.config._booth import LoadedConfig, RecordsConfig
from booth_ctl.control._controller import Controller
from booth_ctl.control._events import Event
from booth_ctl.links.mqtt import records_and_link
from booth_ctl.records import Purged, Records
from booth_ctl.runtime._metrics import BoothCollector, MetricsServer, outbox_depth_of
from booth_ctl.runtime._supervisor import StatusSink, Supervisor

log = logging.getLogger("booth_ctl")
#: The journal gets one line per event of these kinds (the MES gets every event anyway).
events_log = logging.getLogger("booth_ctl.events")
records_log = logging.getLogger("booth_ctl.records")

#: The record store is purged this long after start, then every PURGE_EVERY_S.
PURGE_FIRST_S = 60.0
PURGE_EVERY_S = 3600.0
#: Rows deleted per table in one store call: other record-store calls (events, commands) get
#: their turn between two batches.
PURGE_BATCH = 2000

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
    "refreshed": logging.INFO,
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


async def purge_once(records: Records, cfg: RecordsConfig, *, batch: int = PURGE_BATCH) -> Purged:
    """Delete what the records keep no longer (see RecordStore.purge), batch by batch."""
    now = time.time()
    total = Purged()
    while True:
        got = await records.call(
            records.store.purge,
            audit_keep_days=cfg.audit_keep_days,
            events_keep_days=cfg.events_keep_days,
            now=now,
            limit=batch,
        )
        total += got
        if got.commands < batch and got.events < batch:
            return total


async def purge_records(
    records: Records,
    cfg: RecordsConfig,
    *,
    first_s: float = PURGE_FIRST_S,
    every_s: float = PURGE_EVERY_S,
    batch: int = PURGE_BATCH,
) -> None:
    """The daemon's purge task: ``first_s`` after start, then every ``every_s``, forever.

    One info line when anything went. A failure is logged once (an error) until a purge works
    again; it never ends the task, let alone the daemon.
    """
    failing = False
    await asyncio.sleep(first_s)
    while True:
        try:
            purged = await purge_once(records, cfg, batch=batch)
        except Exception as exc:
            if not failing:
                records_log.error(
                    "record store: purge failed: %s (tried again every %.0f s; not logged "
                    "again until it works)",
                    exc,
                    every_s,
                )
                failing = True
        else:
            if failing:
                records_log.warning("record store: purging works again")
                failing = False
            if purged:
                records_log.info(
                    "record store: purged %d command audit entries older than %d days and %d "
                    "delivered events older than %d days",
                    purged.commands,
                    cfg.audit_keep_days,
                    purged.events,
                    cfg.events_keep_days,
                )
        await asyncio.sleep(every_s)


def gem_readings(supervisor: Supervisor) -> Callable[[], dict[str, Any]]:
    """The readings GEM's status variables show, read from the signals as they are now.

    Not ``supervisor.telemetry()``: that also works out the scan's figures over the last minute
    (milliseconds of sorting), which a host polling S1F3 would put on the scan's loop.
    """
    cfg = supervisor.cfg
    first = next(iter(cfg.vessels.values()))
    temp_key = f"{first.controller}.pv_c"
    o2_key = f"{cfg.device_of_kind('o2_analyzer')}.ppm"

    def readings() -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, key in (("solder_temp_c", temp_key), ("o2_ppm", o2_key)):
            r = supervisor.signals.get(key)
            out[name] = None if r is None or r.value is None else round(float(r.value), 2)
        return out

    return readings


def freeze_heap() -> None:
    """Before the scan starts (modules, config, records, the MES link all loaded), move every
    object alive to the collector's permanent generation: a full collection then walks only what
    was made since, instead of pausing the loop (the scan) for 10-15 ms over the whole heap. The
    one collection here runs before the first scan, which it cannot delay."""
    gc.collect()
    gc.freeze()
    log.info("start-up heap frozen: %d objects", gc.get_freeze_count())


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
    # Set by the supervisor after its first complete process image and status; until then the
    # command authority answers not_ready and the link does not say online.
    ready = asyncio.Event()
    async with records_and_link(loaded, controller, ready) as (records, link):
        vessel_dips, flux_dips = await records.call(records.store.dip_counts)
        controller.restore_counters(vessel_dips, flux_dips)
        extra_tasks: dict[str, Callable[[], Coroutine[Any, Any, None]]] = {
            "records-purge": lambda: purge_records(
                records, loaded.config.records, first_s=PURGE_FIRST_S, every_s=PURGE_EVERY_S
            ),
        }
        status: StatusSink = link
        if loaded.config.hmi is not None:
            # The operator's page: fed beside the MES link, served in the supervisor's tasks.
            # Imported only when configured, as is the GEM link: their web server and codec are
            # a quarter of the process's memory, which a booth without them does not carry.
            from booth_ctl.links.hmi import FanOut, Hmi

            hmi = Hmi(loaded, loaded.config.hmi, link.authority, records)
            status = FanOut(link, hmi.feed)
            extra_tasks["hmi"] = hmi.serve
        supervisor = Supervisor(
            loaded,
            controller=controller,
            events=LoggedEvents(records),
            status=status,
            ready=ready,
            extra_tasks=extra_tasks,
        )
        async with contextlib.AsyncExitStack() as stack:
            metrics = loaded.config.metrics
            if metrics is not None:
                collector = BoothCollector(
                    supervisor,
                    link=link,
                    outbox_depth=lambda: outbox_depth_of(records),
                    devices=lambda: supervisor.devices.devices if supervisor.devices else {},
                    line_rates=lambda: (
                        supervisor.devices.line_rates() if supervisor.devices else {}
                    ),
                )
                try:
                    await stack.enter_async_context(MetricsServer(metrics, collector))
                except OSError as exc:
                    # Metrics are for people; the booth runs without them.
                    log.error(
                        "metrics.port %s:%d: cannot listen: %s", metrics.host, metrics.port, exc
                    )
            gem = loaded.config.gem
            if gem is not None:
                # The SECS/GEM link: one host over HSMS, commands through the one authority.
                from booth_ctl.links.gem import GemLink

                await stack.enter_async_context(
                    GemLink(
                        gem,
                        records,
                        link.authority,
                        Source("gem"),
                        status=controller.status,
                        telemetry=gem_readings(supervisor),
                    )
                )
            freeze_heap()
            await supervisor.run(stop)
    log.info("supervisor stopped")
