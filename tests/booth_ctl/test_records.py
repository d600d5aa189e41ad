"""The record store: durability settings, schema versions, the outbox, jobs, audit, export."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from booth_ctl.control._events import Event
from booth_ctl.records import (
    CRASH_ABORT_REASON,
    MIGRATIONS,
    Purged,
    Records,
    RecordStore,
    SchemaError,
    migrate,
    recipe_hash,
    schema_version,
)

DAY = 86_400.0


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
    with contextlib.closing(sqlite3.connect(tmp_path / "records.sqlite3")) as conn:
        assert schema_version(conn) == MIGRATIONS[-1][0]


def test_migrations_step_in_order_and_refuse_a_newer_schema(tmp_path: Path) -> None:
    with contextlib.closing(sqlite3.connect(tmp_path / "m.sqlite3", isolation_level=None)) as conn:
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


def test_a_failing_migration_leaves_the_previous_version(tmp_path: Path) -> None:
    with contextlib.closing(sqlite3.connect(tmp_path / "m.sqlite3", isolation_level=None)) as conn:
        steps = [(1, "CREATE TABLE a (x)"), (2, "CREATE TABLE b (x); CREATE TABLE a (x)")]
        with pytest.raises(sqlite3.OperationalError):
            migrate(conn, steps)
        assert schema_version(conn) == 1
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        assert "b" not in tables


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


def test_a_dip_withdrawn_gets_its_time_out_and_how_long_it_was_in(store: RecordStore) -> None:
    store.record_event("job_started", {"lot_id": "L2", "recipe": "demo", "units": 1})
    store.record_event("unit_started", {"lot_id": "L2", "unit": 1})
    dip = {"lot_id": "L2", "unit": 1, "vessel": "solder1", "o2_ppm": 80.0, "solder_temp_c": 250.0}
    store.record_event("dip", {**dip, "depth_mm": 3.0, "dwell_s": 1.0})
    job = store.get_job("L2")
    assert job is not None
    assert job["dips"][0]["withdrawn_at"] is None and job["dips"][0]["immersed_s"] is None
    store.record_event(
        "dip_withdrawn",
        {"lot_id": "L2", "unit": 1, "dip": 1, "vessel": "solder1", "immersed_s": 1.234},
    )
    job = store.get_job("L2")
    assert job is not None
    d = job["dips"][0]
    assert d["immersed_s"] == pytest.approx(1.234)
    assert d["withdrawn_at"] is not None and d["withdrawn_at"] >= d["entered_at"]
    out = io.StringIO()
    store.export_lot_csv("L2", out)
    assert next(iter(csv.DictReader(io.StringIO(out.getvalue()))))["immersed_s"] == "1.234"


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
    # The audit itself is kept for days (records.audit_keep_days), then purged.
    purged = store.purge(audit_keep_days=1, events_keep_days=1, now=1050.0 + DAY)
    assert purged == Purged(commands=1, events=0)
    assert [a["command"] for a in store.command_audit()] == ["stop"]


def test_a_command_is_on_record_as_running_until_it_is_done(store: RecordStore) -> None:
    cut = {"request_id": "r1", "command": "reset", "ok": False,
           "error": {"code": "invalid_state", "message": "cut short"}, "result": None}
    done = {"request_id": "r1", "command": "reset", "ok": True, "error": None, "result": {}}
    reader = store.reply_reader()
    try:
        entry = store.command_started("r1", "reset", {}, who="mes", cut_short_reply=cut,
                                      now=1000.0)
        # The command authority's own lookup: the cut-short answer (it is not run twice) ...
        assert store.get_reply("r1", now=1001.0) == cut
        # ... the lookup at a full inbox: nothing yet (it is running now, or was cut short).
        assert reader.first_reply("r1", now=1001.0) is None
        assert store.command_audit()[0]["state"] == "running"
        store.command_done(entry, done)
        assert store.get_reply("r1", now=1001.0) == done
        assert reader.first_reply("r1", now=1001.0) == done
        assert reader.first_reply("r1", now=1101.0) is None  # past the keep time
        assert store.command_audit()[0]["state"] == "done"
    finally:
        reader.close()


def test_commands_left_running_are_settled_as_cut_short_at_start(tmp_path: Path) -> None:
    path = tmp_path / "records.sqlite3"
    cut = {"request_id": "r2", "command": "abort", "ok": False,
           "error": {"code": "invalid_state", "message": "cut short"}, "result": None}
    with RecordStore(path) as store:
        store.command_started("r2", "abort", {}, who="mes", cut_short_reply=cut)
        store.record_command("r3", "reset", {}, who="mes", reply={"ok": True})
    with RecordStore(path) as store:  # a restart after a crash
        assert store.settle_commands_at_start() == ["r2"]
        assert store.settle_commands_at_start() == []
        assert {a["request_id"]: a["state"] for a in store.command_audit()} == {
            "r2": "cut_short", "r3": "done"
        }
        reader = store.reply_reader()
        try:
            assert reader.first_reply("r2") == cut
        finally:
            reader.close()


def test_the_reply_reader_is_not_held_up_by_a_write_lock(store: RecordStore) -> None:
    reply = {"request_id": "r4", "command": "reset", "ok": True, "error": None, "result": {}}
    store.record_command("r4", "reset", {}, who="mes", reply=reply)
    locker = sqlite3.connect(store.path, isolation_level=None)
    reader = store.reply_reader()
    try:
        locker.execute("BEGIN EXCLUSIVE")
        assert reader.first_reply("r4") == reply
        with pytest.raises(sqlite3.OperationalError):
            reader._conn.execute("DELETE FROM commands")  # read only
    finally:
        locker.execute("ROLLBACK")
        locker.close()
        reader.close()


def test_the_audit_of_a_version_1_store_survives_the_migration(tmp_path: Path) -> None:
    path = tmp_path / "v1.sqlite3"
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        migrate(conn, MIGRATIONS[:1])
        conn.execute(
            "INSERT INTO commands (request_id, command, args, who, received_at, reply) "
            "VALUES ('old', 'reset', '{}', 'mes', 1000.0, '{\"ok\": true}')"
        )
    with RecordStore(path, request_id_keep_s=1e9) as store:
        assert store.get_reply("old", now=1001.0) == {"ok": True}
        assert store.command_audit()[0]["state"] == "done"
        assert store.settle_commands_at_start() == []


def test_the_audit_of_a_version_3_store_gets_its_sources(tmp_path: Path) -> None:
    path = tmp_path / "v3.sqlite3"
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        migrate(conn, MIGRATIONS[:3])
        for rid, who in (("a", "mes"), ("b", "boothctl:bob")):
            conn.execute(
                "INSERT INTO commands (request_id, command, args, who, received_at, reply) "
                f"VALUES ('{rid}', 'reset', '{{}}', '{who}', 1000.0, '{{}}')"
            )
    with RecordStore(path, request_id_keep_s=1e9) as store:
        sources = {a["request_id"]: a["source"] for a in store.command_audit()}
    assert sources == {
        "a": {"link": "mqtt", "user": None, "role": None},
        "b": {"link": "cli", "user": None, "role": None},
    }


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


# ---------------------------------------------------------------------------- purge


class _Clock:
    """A virtual wall clock for the store (``time.time()`` of every part of booth_ctl.records)."""

    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def time(self) -> float:
        return self.t


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    c = _Clock()
    for part in ("_audit", "_outbox", "_recipes", "_store"):
        monkeypatch.setattr(f"booth_ctl.records.{part}.time", c)
    return c


_REPLY = {"request_id": "x", "command": "reset", "ok": True, "error": None, "result": {}}


def _audit(store: RecordStore, rid: str, at: float, command: str = "reset") -> None:
    reply = {**_REPLY, "request_id": rid, "command": command}
    store.record_command(rid, command, {}, who="mes", reply=reply, now=at)


def test_reads_leave_the_audit_once_their_request_id_is_no_longer_answered(
    tmp_path: Path,
) -> None:
    with RecordStore(tmp_path / "r.sqlite3", request_id_keep_s=1 * DAY) as store:
        _audit(store, "poll-old", 0.0, "get_status")
        _audit(store, "list-old", 0.0, "list_recipes")
        _audit(store, "poll-new", 2.5 * DAY, "get_status")
        _audit(store, "reset-old", 0.0)
        assert store.purge(audit_keep_days=90, events_keep_days=30, now=3 * DAY) == Purged(2, 0)
        left = {a["request_id"] for a in store.command_audit()}
        assert left == {"poll-new", "reset-old"}


def test_purge_deletes_old_audit_entries_never_a_running_one(
    store: RecordStore, clock: _Clock
) -> None:
    t0 = clock.t
    _audit(store, "old", t0)
    running = store.command_started("run", "reset", {}, who="mes", cut_short_reply=_REPLY,
                                    now=t0)
    _audit(store, "older", t0 + 1 * DAY)
    _audit(store, "edge", t0 + 10 * DAY)  # exactly 10 days old: still kept
    _audit(store, "new", t0 + 15 * DAY)
    now = t0 + 20 * DAY
    assert store.purge(audit_keep_days=10, events_keep_days=1, now=now) == Purged(2, 0)
    assert {a["request_id"] for a in store.command_audit()} == {"run", "edge", "new"}
    # The command that was running gets its reply written and is purged on a later pass.
    store.command_done(running, {**_REPLY, "request_id": "run"})
    assert store.purge(audit_keep_days=10, events_keep_days=1, now=now) == Purged(1, 0)
    assert [a["request_id"] for a in store.command_audit()] == ["new", "edge"]
    assert store.purge(audit_keep_days=10, events_keep_days=1, now=now) == Purged(0, 0)


def test_purge_never_deletes_a_reply_a_repeated_request_id_still_needs(tmp_path: Path) -> None:
    with RecordStore(tmp_path / "r.sqlite3", request_id_keep_s=3 * DAY) as store:
        _audit(store, "r1", 0.0)
        # audit_keep_days shorter than the request_id keep time (the config refuses this):
        # the store keeps the entry anyway.
        assert store.purge(audit_keep_days=1, events_keep_days=1, now=2 * DAY) == Purged(0, 0)
        assert store.get_reply("r1", now=2 * DAY) is not None
        assert store.purge(audit_keep_days=1, events_keep_days=1, now=3 * DAY + 1) == Purged(1, 0)


def test_purge_deletes_old_delivered_events_and_keeps_what_the_records_need(
    store: RecordStore, clock: _Clock
) -> None:
    _job(store, "L1")  # job_started, unit_*, 2 dips, job_completed
    store.record_event("flux_dip", {"lot_id": "L1", "unit": 1, "agent": "alcohol"})
    store.record_event("alarm_set", {"id": "a1", "code": "door_open", "severity": "warning"})
    store.record_event("alarm_cleared", {"id": "a1", "code": "door_open"})
    store.record_event("refreshed", {"what": "solder2"})
    store.record_event("dip", {"vessel": "solder2"})
    old_undelivered = store.record_event("state_changed", {"from": "a", "to": "b"})[0]
    store.mark_delivered(old_undelivered - 1)  # the broker is away since
    clock.t += 29 * DAY
    young = store.record_event("state_changed", {"from": "b", "to": "c"})[0]
    counts = store.dip_counts()
    job = store.get_job("L1")
    alarms = store.alarm_history()
    csv_before = io.StringIO()
    store.export_lot_csv("L1", csv_before)

    # 29 days on: nothing is 30 days old yet.
    assert store.purge(audit_keep_days=90, events_keep_days=30) == Purged(0, 0)
    clock.t += 2 * DAY
    purged = store.purge(audit_keep_days=90, events_keep_days=30)
    deleted = {"job_started", "unit_started", "unit_completed", "unit_rejected", "job_completed",
               "alarm_set", "alarm_cleared"}
    left = store.events()
    assert purged == Purged(commands=0, events=6 + 2)  # the job's, the alarm's
    assert not [e for e in left if e["type"] in deleted]
    assert sorted(e["type"] for e in left) == [
        "dip", "dip", "dip", "flux_dip", "refreshed", "state_changed", "state_changed"
    ]
    # An undelivered event stays however old.
    assert {e["seq"] for e in left if e["type"] == "state_changed"} == {old_undelivered, young}
    assert [e.seq for e in store.undelivered_events()] == [old_undelivered, young]
    # The lot records and the counters built from events are untouched.
    assert store.dip_counts() == counts == ({"solder1": 2, "solder2": 1}, 1)
    assert store.get_job("L1") == job
    assert store.alarm_history() == alarms
    csv_after = io.StringIO()
    store.export_lot_csv("L1", csv_after)
    assert csv_after.getvalue() == csv_before.getvalue()


def test_purge_keeps_what_a_link_with_its_own_cursor_has_not_sent(
    store: RecordStore, clock: _Clock
) -> None:
    from booth_ctl.records._gem_store import set_link_cursor

    sent = store.record_event("alarm_set", {"id": "a1", "code": "door_open"})[0]
    spooled = store.record_event("alarm_cleared", {"id": "a1", "code": "door_open"})[0]
    store.mark_delivered(spooled)  # the broker took both
    set_link_cursor(store, "gem", sent)  # the GEM host has been away since
    clock.t += 31 * DAY
    assert store.purge(audit_keep_days=90, events_keep_days=30) == Purged(0, 1)
    assert [e["seq"] for e in store.events()] == [spooled]


def test_seq_keeps_rising_after_a_purge_deleted_the_newest_events(
    tmp_path: Path, clock: _Clock
) -> None:
    path = tmp_path / "r.sqlite3"
    with RecordStore(path) as store:
        for i in range(5):
            store.record_event("state_changed", {"i": i})
        store.mark_delivered(5)
        clock.t += 31 * DAY
        assert store.purge(audit_keep_days=90, events_keep_days=30) == Purged(0, 5)
        assert store.events() == []
        assert store.last_seq() == 5
        assert store.record_event("state_changed", {"i": 5})[0] == 6
        store.mark_delivered(6)
        clock.t += 31 * DAY
        assert store.purge(audit_keep_days=90, events_keep_days=30).events == 1
    with RecordStore(path) as store:
        assert store.last_seq() == 6
        assert store.record_event("state_changed", {"i": 6})[0] == 7


def test_purge_in_batches(store: RecordStore, clock: _Clock) -> None:
    for i in range(5):
        clock.t += 1.0
        store.record_event("state_changed", {"i": i})
        _audit(store, f"r{i}", clock.t)
    store.mark_delivered(5)
    now = clock.t + 100 * DAY
    got = [store.purge(audit_keep_days=90, events_keep_days=30, now=now, limit=2)]
    # Oldest first: what is left after a batch is the newest.
    assert [e["i"] for e in store.events()] == [2, 3, 4]
    assert [a["request_id"] for a in store.command_audit()] == ["r4", "r3", "r2"]
    got += [store.purge(audit_keep_days=90, events_keep_days=30, now=now, limit=2)
            for _ in range(3)]
    assert got == [Purged(2, 2), Purged(2, 2), Purged(1, 1), Purged(0, 0)]
    assert store.events() == [] and store.command_audit() == []


def test_the_purge_of_events_reads_only_the_rows_it_may_delete(store: RecordStore) -> None:
    with contextlib.closing(sqlite3.connect(store.path)) as conn:
        plan = conn.execute(
            "EXPLAIN QUERY PLAN SELECT seq FROM events WHERE type NOT IN "
            "('dip', 'flux_dip', 'refreshed') AND ts < 1 AND delivered = 1 ORDER BY ts LIMIT 5"
        ).fetchall()
    assert any("events_prunable" in str(row[-1]) for row in plan), plan
