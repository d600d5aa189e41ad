"""Maintenance: refreshing the solder and the flux restarts their dip counters, and the daemon
purges the record store (a minute after start, then hourly) without ever ending over it."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from booth_ctl.config._booth import LoadedConfig, RecordsConfig, load_config
from booth_ctl.control._controller import Controller
from booth_ctl.control._events import CommandRefused
from booth_ctl.records import Purged, RecordStore
from booth_ctl.runtime import _daemon
from devkit.broker import Broker
from tests._util import render_config, wait_for
from tests.booth_ctl._plant import Loop, demo_recipe, idle_loop, new_loop

DAY = 86_400.0


def _alarm_ids(ctl: Controller) -> set[str]:
    return {a["id"] for a in ctl.status()["alarms"]}


def _warned_loop() -> Loop:
    """A booth past its start-up grace whose solder and flux counters stand at their warning."""
    loop = new_loop(vessel_dips_warn=5, flux_dips_warn=4)
    loop.run_for(3.1)
    loop.ctl.restore_counters({"solder1": 7}, 4)
    loop.tick()
    assert {"vessel_dips.solder1", "flux_dips"} <= _alarm_ids(loop.ctl)
    loop.events.clear()
    return loop


# ---------------------------------------------------------------------------- refreshed()


@pytest.mark.parametrize(
    ("what", "alarm", "other", "counters"),
    [
        ("solder1", "vessel_dips.solder1", "flux_dips", {"vessel_dips": {"solder1": 0},
                                                          "flux_dips": 4}),
        ("flux", "flux_dips", "vessel_dips.solder1", {"vessel_dips": {"solder1": 7},
                                                       "flux_dips": 0}),
    ],
)
def test_a_refresh_restarts_the_count_and_clears_its_warning_at_once(
    what: str, alarm: str, other: str, counters: dict[str, Any]
) -> None:
    loop = _warned_loop()
    before = 7 if what == "solder1" else 4
    assert loop.ctl.refreshed(what) == {"what": what, "dips_before": before}
    assert loop.ctl.counters() == counters
    # Cleared in the command itself, not a scan later; the other warning stands.
    ids = _alarm_ids(loop.ctl)
    assert alarm not in ids and other in ids
    loop.tick()
    assert [(e.type, e.data) for e in loop.events] == [
        ("refreshed", {"what": what, "dips_before": before}),
        ("alarm_cleared", {"id": alarm, "code": alarm.split(".", maxsplit=1)[0]}),
    ]
    loop.run_for(1.0)
    assert not [e for e in loop.events if e.type == "alarm_set"], "the warning came back"


def test_a_refresh_without_a_standing_warning_clears_nothing() -> None:
    loop = new_loop()
    loop.run_for(3.1)
    loop.ctl.restore_counters({"solder1": 2}, 1)
    assert loop.ctl.refreshed("solder1") == {"what": "solder1", "dips_before": 2}
    loop.tick()
    assert [e.type for e in loop.events if e.type.startswith(("alarm", "refreshed"))] == [
        "refreshed"
    ]


def test_a_refresh_of_an_unknown_vessel_names_the_known_ones() -> None:
    loop = _warned_loop()
    with pytest.raises(CommandRefused) as info:
        loop.ctl.refreshed("solder9")
    assert info.value.code == "bad_request"
    assert "solder9" in info.value.message
    assert "known: flux, solder1" in info.value.message
    assert loop.ctl.counters() == {"vessel_dips": {"solder1": 7}, "flux_dips": 4}
    loop.tick()
    assert not loop.events
    assert {"vessel_dips.solder1", "flux_dips"} <= _alarm_ids(loop.ctl)


def test_the_count_restarts_and_survives_a_restart_of_the_store(tmp_path: Path) -> None:
    """Two units dip twice each, a refresh, one unit more: after a restart the counts are what
    the controller counted since the refresh (rebuilt from the stored events)."""
    path = tmp_path / "records.sqlite3"
    loop = idle_loop()
    recipe = demo_recipe(loop.plant.loaded)
    with RecordStore(path) as store:

        def store_events() -> None:
            store.record_events([(e.type, e.data) for e in loop.events])
            loop.events.clear()

        loop.ctl.start_job("L1", "demo", recipe, 2)
        loop.run_until(lambda: loop.ctl.state == "complete", 120.0, "two units")
        store_events()
        assert loop.ctl.counters() == {"vessel_dips": {"solder1": 2}, "flux_dips": 2}
        assert store.dip_counts() == ({"solder1": 2}, 2)

        loop.ctl.refreshed("solder1")
        loop.tick()
        store_events()
        loop.ctl.reset()
        loop.run_until(lambda: loop.ctl.state == "idle", 60.0, "idle")
        loop.ctl.start_job("L2", "demo", recipe, 1)
        loop.run_until(lambda: loop.ctl.state == "complete", 120.0, "one unit")
        store_events()
    assert loop.ctl.counters() == {"vessel_dips": {"solder1": 1}, "flux_dips": 3}

    with RecordStore(path) as store:
        counts = store.dip_counts()
    assert counts == ({"solder1": 1}, 3)
    restarted = Controller(loop.plant.loaded)
    restarted.restore_counters(*counts)
    assert restarted.counters() == loop.ctl.counters()


# ---------------------------------------------------------------------------- the purge task


class _InlineRecords:
    """Stands in for Records: store calls run inline (no thread), so a test can watch them."""

    def __init__(self, store: Any) -> None:
        self.store = store

    async def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)


class _ScriptedStore:
    """A store whose purge fails or works as scripted, counting the calls."""

    def __init__(self, script: list[Exception | Purged]) -> None:
        self.script = script
        self.calls: list[dict[str, Any]] = []
        self.done = asyncio.Event()

    def purge(self, **kwargs: Any) -> Purged:
        self.calls.append(kwargs)
        step = self.script[len(self.calls) - 1] if len(self.calls) <= len(self.script) else None
        if len(self.calls) >= len(self.script):
            self.done.set()
        if isinstance(step, Exception):
            raise step
        return step or Purged()


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """asyncio.sleep of the purge task, on a virtual clock: records the wait and yields once."""
    slept: list[float] = []
    real_sleep = asyncio.sleep

    async def virtual_sleep(delay: float, result: Any = None) -> Any:
        slept.append(delay)
        await real_sleep(0)
        return result

    monkeypatch.setattr(_daemon.asyncio, "sleep", virtual_sleep)
    return slept


async def _run_until(coro: Coroutine[Any, Any, None], done: asyncio.Event) -> None:
    task = asyncio.create_task(coro)
    try:
        async with asyncio.timeout(10):
            await done.wait()
        assert not task.done(), "the purge task ended"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_the_purge_runs_a_minute_after_start_then_hourly(sleeps: list[float]) -> None:
    store = _ScriptedStore([Purged(), Purged(), Purged()])
    cfg = RecordsConfig(path="x", audit_keep_days=7, events_keep_days=3)
    await _run_until(_daemon.purge_records(_InlineRecords(store), cfg), store.done)
    assert sleeps[:3] == [60.0, 3600.0, 3600.0]
    assert len(store.calls) == 3
    call = store.calls[0]
    assert (call["audit_keep_days"], call["events_keep_days"]) == (7, 3)
    assert call["limit"] == _daemon.PURGE_BATCH


async def test_a_purge_goes_on_in_batches_until_a_batch_is_short(sleeps: list[float]) -> None:
    store = _ScriptedStore([Purged(3, 1), Purged(1, 3), Purged(0, 2)])
    cfg = RecordsConfig(path="x")
    got = await _daemon.purge_once(_InlineRecords(store), cfg, batch=3)
    assert got == Purged(4, 6)
    assert len(store.calls) == 3
    # One cut-off for the whole pass.
    assert len({c["now"] for c in store.calls}) == 1


async def test_one_info_line_with_the_counts_when_something_went(
    sleeps: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    store = _ScriptedStore([Purged(12, 34), Purged(), Purged()])
    cfg = RecordsConfig(path="x")
    with caplog.at_level(logging.INFO, logger="booth_ctl.records"):
        await _run_until(_daemon.purge_records(_InlineRecords(store), cfg), store.done)
    lines = [r for r in caplog.records if r.name == "booth_ctl.records"]
    assert [r.levelno for r in lines] == [logging.INFO]
    msg = lines[0].getMessage()
    assert "12 command audit entries older than 90 days" in msg
    assert "34 delivered events older than 30 days" in msg


async def test_a_failing_purge_is_logged_once_per_episode_and_never_ends_the_task(
    sleeps: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    full = sqlite3.OperationalError("database or disk is full")
    store = _ScriptedStore([full, full, full, Purged(), full, Purged(1, 0)])
    cfg = RecordsConfig(path="x")
    with caplog.at_level(logging.INFO, logger="booth_ctl.records"):
        await _run_until(_daemon.purge_records(_InlineRecords(store), cfg), store.done)
    lines = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "booth_ctl.records"]
    assert [level for level, _ in lines] == [
        logging.ERROR, logging.WARNING, logging.ERROR, logging.WARNING, logging.INFO
    ]
    assert "disk is full" in lines[0][1]
    assert "works again" in lines[1][1]
    assert len(store.calls) == 6
    # A failed pass waits the hour like any other.
    assert sleeps[:6] == [60.0, 3600.0, 3600.0, 3600.0, 3600.0, 3600.0]


# ---------------------------------------------------------------------------- in the daemon


def _daemon_config(tmp_path: Path, port: int) -> LoadedConfig:
    def over(d: dict[str, Any]) -> None:
        d.pop("metrics", None)
        d["mqtt"].update(port=port, reconnect_min_s=0.02, reconnect_max_s=0.3)
        d["records"].update(audit_keep_days=1, events_keep_days=1)

    return load_config(render_config(tmp_path, overrides=over))


@pytest.mark.mqtt
async def test_the_daemon_restores_the_counters_freezes_its_heap_and_runs_the_purge_task(
    tmp_path: Path, broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = _daemon_config(tmp_path, broker.port)
    path = loaded.resolve(loaded.config.records.path)
    old = 1_000.0  # 1970: far older than a day
    with RecordStore(path) as store:
        for vessel in ("solder1", "solder1", "solder1"):
            store.record_event("dip", {"vessel": vessel})
        store.record_event("refreshed", {"what": "solder1"})
        store.record_event("dip", {"vessel": "solder1"})
        store.record_event("flux_dip", {"agent": "alcohol"})
        store.record_event("state_changed", {"from": "stopped", "to": "resetting"})
        store.mark_delivered(store.last_seq())
        store.record_command("old", "get_status", {}, who="mes", reply={"ok": True}, now=old)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE events SET ts = ?", (old,))
    conn.close()
    seen: dict[str, Any] = {}

    class FakeSupervisor:
        def __init__(self, loaded: LoadedConfig, **kwargs: Any) -> None:
            seen.update(kwargs)

        async def run(self, stop: asyncio.Event) -> None:
            seen["counters"] = seen["controller"].counters()
            task = asyncio.create_task(seen["extra_tasks"]["records-purge"]())
            try:
                with RecordStore(path) as store:
                    await wait_for(
                        lambda: not store.command_audit() and len(store.events()) == 6,
                        timeout_s=10, what="the purge",
                    )
                    seen["events"] = [e["type"] for e in store.events()]
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    def freeze_heap() -> None:
        # Not the test process's own heap: only when, before the supervisor's scan or after.
        seen["frozen_before_the_scan"] = "counters" not in seen

    monkeypatch.setattr(_daemon, "Supervisor", FakeSupervisor)
    monkeypatch.setattr(_daemon, "PURGE_FIRST_S", 0.0)
    monkeypatch.setattr(_daemon, "freeze_heap", freeze_heap)
    await asyncio.wait_for(_daemon.run_daemon(loaded), 30)
    assert seen["frozen_before_the_scan"] is True
    assert seen["counters"] == {"vessel_dips": {"solder1": 1}, "flux_dips": 1}
    # The state change and the old audit entry went; the dips, the flux dip and the refresh stay.
    assert sorted(seen["events"]) == ["dip", "dip", "dip", "dip", "flux_dip", "refreshed"]
