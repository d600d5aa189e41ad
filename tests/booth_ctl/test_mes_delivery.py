"""What the MES sees: online and its last will, retained status, telemetry, and every event in
order across broker outages and a kill -9 of the booth."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from booth_ctl.config._booth import LoadedConfig
from booth_ctl.control._events import Event
from booth_ctl.links.mqtt import records_and_link
from booth_ctl.records import Records, RecordStore
from devkit.broker import Broker, running_broker
from tests._util import ROOT, wait_for
from tests.booth_ctl._mes_helpers import (
    FakeController,
    booth_config,
    mes_client,
    mes_then_link,
    ready_now,
    running_link,
)

pytestmark = pytest.mark.mqtt

#: Events produced one by one every this often while the broker is away.
PRODUCE_EVERY_S = 0.002


def assert_in_order(events: list[dict[str, Any]], first: int | None = None) -> list[int]:
    """Deduplicated seqs, asserting each new one is exactly the previous + 1 (repeats are fine:
    delivery is at least once)."""
    seen: list[int] = []
    for ev in events:
        seq = ev["seq"]
        if seen and seq <= seen[-1]:
            continue  # a repeat of something already received
        expected = seen[-1] + 1 if seen else (first if first is not None else seq)
        assert seq == expected, f"gap or reorder: got seq {seq} after {seen[-1:]}"
        seen.append(seq)
    return seen


async def test_events_go_out_in_order_with_seq_plus_one(tmp_path: Path, broker: Broker) -> None:
    async with mes_then_link(tmp_path, broker.port) as (mes, _, records):
        for i in range(300):
            records.submit("state_changed", {"i": i})
        await records.flush()
        await wait_for(lambda: len(mes.events) >= 300, timeout_s=10, what="300 events")
        await wait_for(
            lambda: records.store.undelivered_events() == [],
            timeout_s=5, what="every event marked delivered",
        )
    assert assert_in_order(mes.events, first=1) == list(range(1, 301))
    assert [e["i"] for e in mes.events[:3]] == [0, 1, 2]
    assert all(e["type"] == "state_changed" and "ts" in e for e in mes.events)


@contextlib.asynccontextmanager
async def producing(records: Records) -> AsyncIterator[list[int]]:
    """Submit an event every few ms until the block ends (as a running job would)."""
    count = [0]

    async def produce() -> None:
        while True:
            count[0] += 1
            records.submit("dip", {"n": count[0], "vessel": "solder1"})
            await asyncio.sleep(PRODUCE_EVERY_S)  # the pace of a running job, not a wait

    task = asyncio.create_task(produce(), name="producer")
    try:
        yield count
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_events_survive_a_broker_outage_without_gap_or_reorder(tmp_path: Path) -> None:
    with running_broker(tmp_path / "broker", persistent=True) as broker:
        loaded = booth_config(tmp_path, broker.port)
        booth_id = loaded.config.booth_id
        async with running_link(loaded, FakeController()) as (link, records):
            store = records.store
            async with (
                mes_client(broker.port, booth_id, identifier="mes-p", persistent=True) as m1,
                producing(records),
            ):
                await wait_for(lambda: len(m1.events) >= 30, timeout_s=10, what="30 events")
                broker.stop()  # a clean stop keeps the MES's session on disk
                at_stop = await records.call(store.last_seq)
                await wait_for(
                    lambda: store.last_seq() >= at_stop + 50,
                    timeout_s=10, what="50 events stored while the broker is away",
                )
                broker.start()
                await wait_for(lambda: link.connections >= 2, timeout_s=10, what="reconnect")
            received = list(m1.events)
            async with mes_client(broker.port, booth_id, identifier="mes-p", persistent=True) as m2:
                last = await records.call(store.last_seq)
                await wait_for(
                    lambda: any(e["seq"] == last for e in m2.events),
                    timeout_s=10, what=f"event {last} after the outage",
                )
                received += m2.events
        assert assert_in_order(received, first=1) == list(range(1, last + 1))


async def test_events_resume_after_the_broker_is_killed(tmp_path: Path) -> None:
    with running_broker(tmp_path / "broker") as broker:
        loaded = booth_config(tmp_path, broker.port)
        booth_id = loaded.config.booth_id
        async with running_link(loaded, FakeController()) as (link, records):
            store = records.store
            async with producing(records):
                await wait_for(lambda: store.last_seq() >= 100, timeout_s=10, what="100 events")
                broker.stop(kill=True)
                at_kill = store.last_seq()
                await wait_for(
                    lambda: store.last_seq() >= at_kill + 50,
                    timeout_s=10, what="50 events stored while the broker is dead",
                )
                broker.start()
                async with mes_client(broker.port, booth_id) as mes:
                    await wait_for(lambda: link.connections >= 2, timeout_s=10, what="reconnect")
                    await wait_for(lambda: len(mes.events) >= 20, timeout_s=10, what="events")
            async with mes_client(broker.port, booth_id) as tail:
                last, _ = await records.record("job_completed", {"lot_id": "x"})
                await wait_for(
                    lambda: any(e["seq"] == last for e in tail.events),
                    timeout_s=10, what=f"event {last}",
                )
            await wait_for(
                lambda: store.undelivered_events() == [],
                timeout_s=10, what="every event acknowledged by the broker",
            )
        # What the MES got after the restart is one unbroken run (the booth resent from its
        # oldest unacknowledged event), and the store saw every event acknowledged.
        assert_in_order(mes.events)


async def test_online_and_retained_status(tmp_path: Path, broker: Broker) -> None:
    loaded = booth_config(tmp_path, broker.port)
    ctl = FakeController()
    async with running_link(loaded, ctl) as (link, _):
        link.status_changed(ctl.status())
        ctl.state = "idle"
        link.status_changed(ctl.status())
        # A client that comes later still gets both, retained.
        async with mes_client(broker.port, loaded.config.booth_id) as mes:
            await wait_for(lambda: mes.online == [True], timeout_s=5, what="online true")
            await wait_for(lambda: mes.status, timeout_s=5, what="retained status")
            assert mes.status[-1]["state"] == "idle"
            assert {"state", "ready", "job", "alarms", "interlocks", "ts", "mode"} <= set(
                mes.status[-1]
            )
            ctl.state = "execute"
            link.status_changed(ctl.status())
            await wait_for(
                lambda: mes.status[-1]["state"] == "execute", timeout_s=5, what="status change"
            )
    # A clean stop says offline itself (no will is sent on a clean disconnect).
    async with mes_client(broker.port, loaded.config.booth_id) as mes:
        await wait_for(lambda: mes.online == [False], timeout_s=5, what="online false")


async def test_telemetry_is_published(tmp_path: Path, broker: Broker) -> None:
    async with mes_then_link(tmp_path, broker.port) as (mes, link, _):
        for i in range(3):
            link.telemetry({"o2_ppm": 100.0 + i, "scan": {"period_ms": 10}})
            await wait_for(lambda n=i: len(mes.telemetry) > n, timeout_s=5, what="telemetry")
    assert [t["o2_ppm"] for t in mes.telemetry] == [100.0, 101.0, 102.0]
    assert all("ts" in t for t in mes.telemetry)


@contextlib.contextmanager
def child_booth(config: Path, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.booth_ctl._link_child", str(config), *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        assert proc.stdout is not None
        proc.stdout.close()


async def ready(proc: subprocess.Popen[bytes]) -> int:
    assert proc.stdout is not None
    line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 20.0)
    assert line.startswith(b"ready "), f"child booth did not start: {line!r}, rc {proc.poll()}"
    return int(line.split()[1])


def _config(loaded: LoadedConfig) -> Path:
    return loaded.path


async def test_last_will_says_offline_when_the_booth_dies(tmp_path: Path, broker: Broker) -> None:
    loaded = booth_config(tmp_path, broker.port)
    async with mes_client(broker.port, loaded.config.booth_id) as mes:
        with child_booth(_config(loaded)) as proc:
            await ready(proc)
            await wait_for(lambda: mes.online[-1:] == [True], timeout_s=10, what="online true")
            proc.send_signal(signal.SIGKILL)
            await wait_for(lambda: mes.online[-1:] == [False], timeout_s=10, what="last will")


async def test_kill_9_mid_dip_seq_continues_and_the_job_is_aborted(
    tmp_path: Path, broker: Broker
) -> None:
    loaded = booth_config(tmp_path, broker.port)
    async with mes_client(broker.port, loaded.config.booth_id) as mes:
        with child_booth(_config(loaded), "--dip") as proc:
            last = await ready(proc)
            await wait_for(
                lambda: any(e["seq"] == last for e in mes.events), timeout_s=10, what="the dip"
            )
            proc.send_signal(signal.SIGKILL)
            await wait_for(lambda: mes.online[-1:] == [False], timeout_s=10, what="last will")
        with child_booth(_config(loaded)) as proc:
            await ready(proc)
            await wait_for(
                lambda: any(e["type"] == "job_aborted" for e in mes.events),
                timeout_s=10, what="job_aborted after the restart",
            )
    aborted = next(e for e in mes.events if e["type"] == "job_aborted")
    assert aborted["seq"] == last + 1 and aborted["lot_id"] == "K9"
    seqs = assert_in_order(mes.events, first=1)
    by_seq = {e["seq"]: e["type"] for e in mes.events}
    assert [by_seq[s] for s in seqs[-4:]] == ["job_started", "unit_started", "dip", "job_aborted"]
    with RecordStore(loaded.config.records.path) as store:
        job = store.get_job("K9")
    assert job is not None and job["state"] == "aborted"
    assert job["unit_records"][0]["outcome"] == "aborted" and len(job["dips"]) == 1


async def test_the_supervisor_wiring_aborts_jobs_left_running(
    tmp_path: Path, broker: Broker
) -> None:
    loaded = booth_config(tmp_path, broker.port)
    with RecordStore(loaded.config.records.path) as store:
        store.record_event("job_started", {"lot_id": "C1", "recipe": "demo", "units": 1})
        before = store.last_seq()
    async with mes_client(broker.port, loaded.config.booth_id) as mes:
        async with records_and_link(loaded, FakeController(), ready_now()) as (records, link):
            await asyncio.wait_for(link.connected.wait(), 10.0)
            await records.put(Event("state_changed", {"from": "stopped", "to": "resetting"}))
            await wait_for(lambda: len(mes.events) >= 3, timeout_s=10, what="3 events")
        assert [(e["seq"], e["type"]) for e in mes.events[-2:]] == [
            (before + 1, "job_aborted"),
            (before + 2, "state_changed"),
        ]
    with RecordStore(loaded.config.records.path) as store:
        job = store.get_job("C1")
    assert job is not None and job["state"] == "aborted"
