"""Spooling (S6F11/S5F1 while the host is away), across a link drop and a restart of the
supervisor; purge; and 20 reconnect cycles that leave nothing behind."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import secsgem.secs

from tests.booth_ctl.gem._host import Host
from tests.booth_ctl.gem.conftest import GemBooth, mqtt_send

SEQ = 1001


def seqs(h: Host) -> list[int]:
    return [e["dataid"] for e in h.received]


def newest_seq(booth: GemBooth) -> int:
    """The newest event's seq, read from the records (read-only, beside the supervisor)."""
    path = Path(booth.stack.data["records"]["path"])
    if not path.is_absolute():
        path = booth.stack.config.parent / path
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        return int(db.execute("SELECT MAX(seq) FROM events").fetchone()[0])


def cycle_state(booth: GemBooth) -> None:
    """Make state_changed events while no host listens (through MQTT)."""
    mqtt_send(booth.stack, "reset")
    mqtt_send(booth.stack, "stop")


def test_spool_across_a_link_drop_and_a_restart(gem_booth: GemBooth) -> None:
    with gem_booth.host() as h:
        h.ask(2, 33, {"DATAID": 1, "DATA": []})
        assert h.ask(2, 33, {"DATAID": 1, "DATA": [{"RPTID": 1, "VID": [SEQ, 1004]}]}).get() == 0
        assert h.ask(2, 35, {"DATAID": 1, "DATA": [{"CEID": 1, "RPTID": [1]}]}).get() == 0
        mqtt_send(gem_booth.stack, "stop")
        mqtt_send(gem_booth.stack, "reset")
        h.wait(lambda: any(e["ceid"] == 1 for e in h.received), "a live state_changed")
        h.wait(lambda: h.ask(1, 3, [9]).get()[0] >= max(seqs(h)), "delivered so far")
        last = max(seqs(h))

    # The link is down: events are spooled in the outbox.
    cycle_state(gem_booth)
    with gem_booth.host() as h:
        assert h.ask(6, 23, 0).get() in (0, 2)  # transmit (or already sent)
        h.wait(lambda: any(e["ceid"] == 1 for e in h.received), "the spooled events")
        got = seqs(h)
        assert got[0] == last + 1, f"gap after {last}: {got}"
        assert got == list(range(got[0], got[0] + len(got)))
        # The report definition came through the restart of the link (it is persisted).
        assert h.received[0]["reports"] == [] or h.received[0]["reports"][0]["rptid"] == 1
        h.wait(lambda: h.ask(1, 3, [9]).get()[0] >= max(seqs(h)), "delivered so far")
        last = max(seqs(h))

    # Down again, and the supervisor restarts meanwhile: the spool survives it.
    cycle_state(gem_booth)
    gem_booth.restart_supervisor()
    with gem_booth.host() as h:
        h.wait(lambda: h.ask(1, 3, [1]).get()[0] != "", "the restarted runtime's status")
        cursor = h.wait(lambda: [c for c in h.ask(1, 3, [9]).get() if c > last], "delivery")[0]
        h.wait(lambda: seqs(h) and max(seqs(h)) >= cursor, "the spool after a restart")
        got = seqs(h)
        assert got[0] == last + 1, f"gap after {last} across the restart: {got}"
        assert got == list(range(got[0], got[0] + len(got)))
        # Reports and links are persisted: the spooled state changes carry report 1.
        for e in h.received:
            if e["ceid"] == 1:
                assert e["reports"][0]["rptid"] == 1
                assert e["reports"][0]["values"][0] == e["dataid"]


def test_spool_held_for_s6f23_then_purged(gem_booth: GemBooth) -> None:
    with gem_booth.host() as h:
        assert h.ask(2, 15, [{"ECID": 2003, "ECV": secsgem.secs.variables.U1(1)}]).get() == 0
    cycle_state(gem_booth)
    try:
        with gem_booth.host() as h:
            # Held: nothing comes until the host asks; then purge drops it.
            assert h.ask(6, 23, 1).get() == 0
            assert h.received == [], "spooled events were sent while held"
            assert h.ask(6, 23, 1).get() == 2  # nothing spooled any more
            cursor = h.ask(1, 3, [9]).get()[0]
            mqtt_send(gem_booth.stack, "reset")
            h.wait(lambda: h.received, "new events after the purge")
            got = seqs(h)
            assert got[0] == cursor + 1 and got == list(range(got[0], got[0] + len(got)))
    finally:
        with gem_booth.host() as h:
            assert h.ask(2, 15, [{"ECID": 2003, "ECV": secsgem.secs.variables.U1(0)}]).get() == 0


def test_twenty_reconnect_cycles_leave_nothing_behind(gem_booth: GemBooth) -> None:
    with gem_booth.host() as h:
        assert h.ask(1, 1).get()[0] == "BOOTH-SI"
    before = gem_booth.open_fds()
    for i in range(20):
        with gem_booth.host() as h:
            assert h.ask(1, 1).get()[0] == "BOOTH-SI", f"cycle {i}"
            assert h.ask(1, 3, [1]).get()[0]
    after = gem_booth.open_fds()
    assert after <= before + 2, f"file descriptors grew from {before} to {after}"


def test_streams_not_spooled_are_dropped_while_away(gem_booth: GemBooth) -> None:
    with gem_booth.host() as h:
        refused = h.ask(2, 43, [{"STRID": 1, "FCNID": []}]).get()
        assert refused["RSPACK"] == 1 and refused["DATA"][0]["STRACK"] == 1
        # Spool S5F1 only: the state changes made while the host is away are not kept for it.
        assert h.ask(2, 43, [{"STRID": 5, "FCNID": [1]}]).get()["RSPACK"] == 0
        last = h.wait(lambda: h.ask(1, 3, [9]).get()[0], "the cursor")
    try:
        cycle_state(gem_booth)
        # What was stored while the host was away (later events are live, and go).
        away = newest_seq(gem_booth)
        assert away > last
        with gem_booth.host() as h:
            mqtt_send(gem_booth.stack, "reset")
            h.wait(lambda: any(e["ceid"] == 1 for e in h.received), "a live state change")
            kept = [e["dataid"] for e in h.received if e["dataid"] <= away]
            assert not kept, f"S6F11 of events from while away, not spooled: {kept}"
    finally:
        with gem_booth.host() as h:
            assert h.ask(2, 43, [{"STRID": 5, "FCNID": []}, {"STRID": 6, "FCNID": [11]}]
                         ).get()["RSPACK"] == 0
