"""The record store: durability settings, schema versions, the outbox, jobs, audit, export."""

from __future__ import annotations

import asyncio
import csv
import io
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from booth_ctl._events import Event
from booth_ctl._migrations import MIGRATIONS, SchemaError, migrate, schema_version
from booth_ctl._recorder import Records
from booth_ctl._records import CRASH_ABORT_REASON, RecordStore, recipe_hash


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RecordStore]:
    with RecordStore(tmp_path / "records.sqlite3", request_id_keep_s=100.0) as s:
        yield s


def _job(store: RecordStore, lot: str = "L1", units: int = 2) -> None:
    store.record_event("job_started", {"lot_id": lot, "recipe": "demo", "units": units})
    for u in range(1, units + 1):
        store.record_event("unit_started", {"lot_id": lot, "unit": u})
        store.record_event(
            "dip",
            {
                "lot_id": lot,
                "unit": u,
                "vessel": "solder1",
                "o2_ppm": 120.5 + u,
                "solder_temp_c": 250.2,
                "depth_mm": 3.0,
                "dwell_s": 1.0,
                "entered_at": 1000.0 + u,
                "withdrawn_at": 1001.0 + u,
            },
        )
        if u == 2:
            store.record_event("unit_rejected", {"lot_id": lot, "unit": u, "reason": "o2_high"})
        else:
            store.record_event("unit_completed", {"lot_id": lot, "unit": u})
    store.record_event("job_completed", {"lot_id": lot})


def test_wal_and_synchronous_full(store: RecordStore) -> None:
    assert store.pragma("journal_mode") == "wal"
    assert store.pragma("synchronous") == 2  # FULL
    assert store.pragma("integrity_check") == "ok"


def test_fresh_store_is_at_the_newest_schema(store: RecordStore, tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "records.sqlite3")
    try:
        assert schema_version(conn) == MIGRATIONS[-1][0]
    finally:
        conn.close()


def test_migrations_step_in_order_and_refuse_a_newer_schema(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "m.sqlite3", isolation_level=None)
    try:
        steps = [(1, "CREATE TABLE a (x INTEGER)"), (2, "ALTER TABLE a ADD COLUMN y TEXT")]
        assert migrate(conn, steps[:1]) == 1
        conn.execute("INSERT INTO a (x) VALUES (1)")
        assert migrate(conn, steps) == 2
        assert conn.execute("SELECT x, y FROM a").fetchall() == [(1, None)]
        assert migrate(conn, steps) == 2  # idempotent
        with pytest.raises(SchemaError, match="newer than this software"):
            migrate(conn, steps[:1])
        with pytest.raises(SchemaError, match="skip"):
            migrate(conn, [*steps, (4, "CREATE TABLE b (x)")])
    finally:
        conn.close()


def test_a_failing_migration_leaves_the_previous_version(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "m.sqlite3", isolation_level=None)
    try:
        steps = [(1, "CREATE TABLE a (x)"), (2, "CREATE TABLE b (x); CREATE TABLE a (x)")]
        with pytest.raises(sqlite3.OperationalError):
            migrate(conn, steps)
        assert schema_version(conn) == 1
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        assert "b" not in tables
    finally:
        conn.close()


def test_seq_rises_by_one_and_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite3"
    with RecordStore(path) as s:
        seqs = [s.record_event("state_changed", {"state": f"s{i}"})[0] for i in range(5)]
    assert seqs == [1, 2, 3, 4, 5]
    with RecordStore(path) as s:
        assert s.record_event("state_changed", {"state": "x"})[0] == 6
        evs = s.events()
    assert [e["seq"] for e in evs] == [1, 2, 3, 4, 5, 6]
    assert evs[0]["type"] == "state_changed" and evs[0]["state"] == "s0" and "ts" in evs[0]


def test_event_data_cannot_override_the_envelope(store: RecordStore) -> None:
    seq, ts = store.record_event("dip", {"seq": 99, "type": "x", "ts": 0})
    ev = store.events()[0]
    assert (ev["seq"], ev["type"], ev["ts"]) == (seq, "dip", ts)


def test_outbox_delivery_marks(store: RecordStore) -> None:
    for i in range(10):
        store.record_event("state_changed", {"i": i})
    assert [e.seq for e in store.undelivered_events(limit=3)] == [1, 2, 3]
    store.mark_delivered(7)
    assert [e.seq for e in store.undelivered_events()] == [8, 9, 10]
    assert store.last_seq() == 10


def test_job_units_and_dips_from_events(store: RecordStore) -> None:
    store.job_accepted("L1", "demo", "abc123", 2)
    _job(store)
    job = store.get_job("L1")
    assert job is not None
    assert job["state"] == "completed" and job["outcome"] == "completed"
    assert job["recipe"] == "demo" and job["recipe_hash"] == "abc123" and job["units"] == 2
    assert job["started_at"] is not None and job["ended_at"] is not None
    units = job["unit_records"]
    assert [(u["unit"], u["outcome"], u["reject_reason"]) for u in units] == [
        (1, "completed", None),
        (2, "rejected", "o2_high"),
    ]
    assert units[0]["dips"][0]["o2_ppm"] == 121.5
    assert units[0]["dips"][0]["solder_temp_c"] == 250.2
    assert units[1]["dips"][0]["entered_at"] == 1002.0
    assert len(job["dips"]) == 2
    assert store.get_job("nope") is None


def test_units_without_numbers_are_counted(store: RecordStore) -> None:
    store.record_event("job_started", {"lot_id": "L2", "recipe": "demo", "units": 2})
    for _ in range(2):
        store.record_event("unit_started", {})
        store.record_event("dip", {"vessel": "solder1", "o2_ppm": 100.0, "solder_temp_c": 250.0})
        store.record_event("unit_completed", {})
    job = store.get_job("L2")
    assert job is not None
    assert [(u["unit"], u["outcome"], len(u["dips"])) for u in job["unit_records"]] == [
        (1, "completed", 1),
        (2, "completed", 1),
    ]


def test_jobs_left_running_are_recorded_aborted_at_start(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite3"
    with RecordStore(path) as s:
        s.record_event("job_started", {"lot_id": "L9", "recipe": "demo", "units": 3})
        s.record_event("unit_started", {"unit": 1})
        s.record_event("dip", {"vessel": "solder1", "o2_ppm": 80.0, "solder_temp_c": 251.0})
        last = s.last_seq()
    with RecordStore(path) as s:
        assert s.mark_aborted_jobs_at_start() == ["L9"]
        assert s.mark_aborted_jobs_at_start() == []
        job = s.get_job("L9")
        ev = s.events(after_seq=last)
    assert job is not None
    assert job["state"] == "aborted" and job["reason"] == CRASH_ABORT_REASON
    assert job["unit_records"][0]["outcome"] == "aborted"
    assert len(job["dips"]) == 1
    assert [(e["seq"], e["type"], e["lot_id"]) for e in ev] == [(last + 1, "job_aborted", "L9")]


def test_alarm_history(store: RecordStore) -> None:
    store.record_event("alarm_set", {"id": "a1", "code": "O2_HIGH", "severity": "warning",
                                     "text": "O2 over limit"})
    store.record_event("alarm_cleared", {"id": "a1"})
    store.record_event("alarm_set", {"id": "a2", "code": "DOOR", "severity": "trip", "text": "d"})
    hist = store.alarm_history()
    assert [(a["id"], a["cleared_at"] is None) for a in hist] == [("a2", True), ("a1", False)]


def test_csv_export_of_a_lot(store: RecordStore) -> None:
    store.job_accepted("L1", "demo", "abc123", 2)
    _job(store)
    out = io.StringIO()
    assert store.export_lot_csv("L1", out) == 2
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [r["unit"] for r in rows] == ["1", "2"]
    assert rows[1]["unit_outcome"] == "rejected" and rows[1]["reject_reason"] == "o2_high"
    assert rows[0]["o2_ppm"] == "121.5" and rows[0]["recipe_hash"] == "abc123"
    assert rows[0]["entered_at"].startswith("1970-01-01T00:16:41")
    empty = io.StringIO()
    assert store.export_lot_csv("none", empty) == 0


def test_command_replies_are_kept_for_the_configured_time(store: RecordStore) -> None:
    reply = {"request_id": "r1", "command": "reset", "ok": True, "error": None, "result": {}}
    store.record_command("r1", "reset", {}, who="mes", reply=reply, now=1000.0)
    assert store.get_reply("r1", now=1050.0) == reply
    assert store.get_reply("r1", now=1101.0) is None
    # Past the keep time the request_id may run again; the audit keeps both.
    store.record_command("r1", "stop", {}, who="mes", reply={**reply, "command": "stop"},
                         now=1102.0)
    assert store.get_reply("r1", now=1103.0)["command"] == "stop"  # type: ignore[index]
    assert [a["command"] for a in store.command_audit()] == ["stop", "reset"]
    assert store.purge_commands(now=1150.0) == 1
    assert [a["command"] for a in store.command_audit()] == ["stop"]


def test_recipe_versions_and_hash(store: RecordStore) -> None:
    a = store.store_recipe("demo", {"x": 1, "y": [1, 2]}, "mes")
    again = store.store_recipe("demo", {"y": [1, 2], "x": 1}, "mes")
    b = store.store_recipe("demo", {"x": 2}, "file")
    assert a.hash == again.hash == recipe_hash({"y": [1, 2], "x": 1})
    assert (a.version, again.version, b.version) == (1, 1, 2)
    latest = store.latest_recipe("demo")
    assert latest is not None and latest.body == {"x": 2} and latest.version == 2
    from_mes = store.latest_recipe("demo", source="mes")
    assert from_mes is not None and from_mes.body == {"x": 1, "y": [1, 2]}
    assert store.recipe_versions() == {"demo": {"versions": 2, "hash": b.hash, "source": "file"}}


def test_control_mode(store: RecordStore) -> None:
    assert store.get_mode() == "remote"
    store.set_mode("local", who="operator")
    assert store.get_mode() == "local"
    audit = store.command_audit()[0]
    assert (audit["command"], audit["args"], audit["who"]) == (
        "mode", {"mode": "local"}, "operator"
    )
    with pytest.raises(ValueError, match="mode must be one of"):
        store.set_mode("auto", who="operator")


async def test_records_thread_stores_events_in_order_and_notifies(store: RecordStore) -> None:
    notified = asyncio.Event()
    async with Records(store) as records:
        records.on_committed(notified.set)
        futs = [records.submit("state_changed", {"i": i}) for i in range(50)]
        results = await asyncio.gather(*futs)
        await records.put(Event("dip", {"vessel": "solder1"}))
        seq = (await records.call(store.events, 50))[0]["seq"]
        assert notified.is_set()
        last = await records.call(store.last_seq)
    assert [s for s, _ in results] == list(range(1, 51))
    assert seq == 51 == last


async def test_records_stores_what_was_submitted_before_closing(store: RecordStore) -> None:
    async with Records(store) as records:
        for i in range(20):
            records.submit("state_changed", {"i": i})
    assert store.last_seq() == 20


def test_dip_counts_since_the_last_refresh(store: RecordStore) -> None:
    for vessel in ("solder1", "solder1", "solder2"):
        store.record_event("dip", {"vessel": vessel})
    store.record_event("flux_dip", {"agent": "alcohol"})
    assert store.dip_counts() == ({"solder1": 2, "solder2": 1}, 1)
    store.record_event("refreshed", {"what": "solder1"})
    store.record_event("refreshed", {"what": "flux"})
    store.record_event("dip", {"vessel": "solder1"})
    assert store.dip_counts() == ({"solder1": 1, "solder2": 1}, 0)
