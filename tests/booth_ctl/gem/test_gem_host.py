"""The GEM link of a running supervisor (against the simulated booth) driven by an independent
host (secsgem's host handler) over HSMS on loopback: CONTRACT §8 end to end."""

from __future__ import annotations

import json
import time
from typing import Any

import secsgem.secs

from booth_ctl.links.gem._secs2 import decode
from tests._util import holds_sync
from tests.booth_ctl.gem._host import Host
from tests.booth_ctl.gem.conftest import GemBooth, boothctl, mqtt_send


def raw_function(h: Host, stream: int, function: int, data: Any = None) -> int:
    sf = h.stream_function(stream, function)
    reply = h.send_and_waitfor_response(sf() if data is None else sf(data))
    assert reply is not None
    return int(reply.header.function)


def rcmd(h: Host, name: str, params: list[list[Any]] | None = None) -> dict[str, Any]:
    got: dict[str, Any] = h.send_remote_command(name, params or []).get()
    return got


def test_select_linktest_communication_and_identity(gem_booth: GemBooth) -> None:
    with gem_booth.host() as h:
        assert h.protocol.send_linktest_req() is not None
        assert h.ask(1, 1).get() == ["BOOTH-SI", "1.0"]
        s1f14 = h.ask(1, 13).get()
        assert s1f14["COMMACK"] == 0 and s1f14["MDLN"] == ["BOOTH-SI", "1.0"]


def test_status_variables_in_their_formats(gem_booth: GemBooth) -> None:
    with gem_booth.host() as h:
        values = h.ask(1, 3, [1, 2, 3, 4, 5, 6]).get()
        state, mode, temp_c, o2_ppm, job, units_done = values
        assert state in ("stopped", "resetting", "idle", "stopping")
        assert mode == "remote"
        assert isinstance(temp_c, float) and 150.0 < temp_c < 300.0
        assert isinstance(o2_ppm, float) and o2_ppm >= 0.0
        assert job == "" and units_done == 0
        # The formats on the wire: A, A, F8, F8, A, U4 (CONTRACT §8).
        msg = h.send_and_waitfor_response(h.stream_function(1, 3)([1, 2, 3, 4, 5, 6]))
        items = decode(msg.data).items
        assert [i.fmt.name for i in items] == ["A", "A", "F8", "F8", "A", "U4"]
        names = [(r["SVID"], r["SVNAME"]) for r in h.ask(1, 11, [1, 6]).get()]
        assert names == [(1, "state"), (6, "units_done")]
        # An SVID the booth does not have: a zero-length item.
        assert h.ask(1, 3, [999]).get() == [[]]


def test_equipment_constants_with_every_eac(gem_booth: GemBooth) -> None:
    with gem_booth.host() as h:
        assert h.ask(2, 13, [2001, 2002]).get() == [10, 1]
        assert h.ask(2, 15, [{"ECID": 2001, "ECV": secsgem.secs.variables.U2(30)}]).get() == 0
        assert h.ask(2, 13, [2001]).get() == [30]
        assert h.ask(2, 15, [{"ECID": 4242, "ECV": secsgem.secs.variables.U2(1)}]).get() == 1
        assert h.ask(2, 15, [{"ECID": 2002, "ECV": secsgem.secs.variables.U1(9)}]).get() == 3
        assert h.ask(2, 13, [2002]).get() == [1]  # all or nothing: unchanged
        rows = h.ask(2, 29, [2001]).get()
        assert rows[0]["ECNAME"] == "EstablishCommunicationsTimeout"
        assert (rows[0]["ECMIN"], rows[0]["ECMAX"], rows[0]["ECDEF"]) == (1, 240, 10)
        assert h.ask(2, 15, [{"ECID": 2001, "ECV": secsgem.secs.variables.U2(10)}]).get() == 0


def test_offline_online_and_the_booths_mode_are_one_control_state(gem_booth: GemBooth) -> None:
    with gem_booth.host() as h:
        assert h.ask(1, 3, [7]).get() == [5]  # ON-LINE REMOTE
        assert h.ask(1, 15).get() == 0
        # OFF-LINE: everything but S1F13/S1F17 is aborted (SxF0).
        assert raw_function(h, 1, 3, [1]) == 0
        assert raw_function(h, 2, 41, {"RCMD": "reset", "PARAMS": []}) == 0
        assert h.ask(1, 17).get() == 0
        assert h.ask(1, 17).get() == 2  # already on line
        code, _ = boothctl(gem_booth.stack, "mode", "local")
        assert code == 0
        try:
            h.wait(lambda: h.ask(1, 3, [7, 2]).get() == [4, "local"], "ON-LINE LOCAL")
            # Local: the host may read, not command (HCACK 2), like the MES over MQTT.
            assert rcmd(h, "reset")["HCACK"] == 2
            assert rcmd(h, "get_status")["HCACK"] == 0
        finally:
            boothctl(gem_booth.stack, "mode", "remote")
        h.wait(lambda: h.ask(1, 3, [7]).get() == [5], "ON-LINE REMOTE again")


def test_every_hcack(gem_booth: GemBooth) -> None:
    with gem_booth.host() as h:
        assert rcmd(h, "frobnicate")["HCACK"] == 1
        got = rcmd(h, "start_job", [["lot_id", "L1"], ["recipe", "demo"], ["units", "x"]])
        assert got["HCACK"] == 3 and {"CPNAME": "units", "CPACK": 2} in got["PARAMS"]
        got = rcmd(h, "start_job", [["lot_id", "L1"], ["recipe", "nope"],
                                    ["units", secsgem.secs.variables.U4(1)]])
        assert got["HCACK"] == 3
        got = rcmd(h, "ack_alarm", [["alarm_id", "all"], ["colour", "red"]])
        assert got["HCACK"] == 3 and {"CPNAME": "colour", "CPACK": 1} in got["PARAMS"]
        rcmd(h, "stop")  # 0, or 2 when stopped already
        h.wait(lambda: h.ask(1, 3, [1]).get() == ["stopped"], "stopped")
        assert rcmd(h, "unhold")["HCACK"] == 2  # not in this state
        assert rcmd(h, "reset")["HCACK"] == 0


def test_reports_and_events_in_order_without_gaps(gem_booth: GemBooth) -> None:
    with gem_booth.host() as h:
        h.ask(2, 33, {"DATAID": 1, "DATA": []})  # no reports
        assert h.ask(2, 33, {"DATAID": 1, "DATA": [{"RPTID": 7, "VID": [1001, 1003, 1004, 2]}]}
                     ).get() == 0
        # DRACK: already defined (3), unknown VID (4).
        assert h.ask(2, 33, {"DATAID": 1, "DATA": [{"RPTID": 7, "VID": [1001]}]}).get() == 3
        assert h.ask(2, 33, {"DATAID": 1, "DATA": [{"RPTID": 8, "VID": [5555]}]}).get() == 4
        # LRACK: unknown CEID (4), unknown RPTID (5), then linked, then already linked (3).
        assert h.ask(2, 35, {"DATAID": 1, "DATA": [{"CEID": 777, "RPTID": [7]}]}).get() == 4
        assert h.ask(2, 35, {"DATAID": 1, "DATA": [{"CEID": 1, "RPTID": [8]}]}).get() == 5
        assert h.ask(2, 35, {"DATAID": 1, "DATA": [{"CEID": 1, "RPTID": [7]}]}).get() == 0
        assert h.ask(2, 35, {"DATAID": 1, "DATA": [{"CEID": 1, "RPTID": [7]}]}).get() == 3
        assert h.ask(2, 37, {"CEED": True, "CEID": [777]}).get() == 1
        assert h.ask(2, 37, {"CEED": True, "CEID": []}).get() == 0
        rcmd(h, "stop")
        h.wait(lambda: h.ask(1, 3, [1]).get() == ["stopped"], "stopped")
        start = len(h.received)
        assert rcmd(h, "reset")["HCACK"] == 0
        assert rcmd(h, "stop")["HCACK"] == 0
        h.wait(lambda: sum(1 for e in h.received[start:] if e["ceid"] == 1) >= 2,
               "two state_changed reports")
        changes = [e for e in h.received[start:] if e["ceid"] == 1]
        values = changes[-1]["reports"][0]["values"]
        assert changes[-1]["reports"][0]["rptid"] == 7
        assert values[0] == changes[-1]["dataid"]  # DVID 1001 is the event's seq
        assert values[1:3] == ["stopped", "resetting"] or values[2] in ("stopped", "resetting")
        assert values[3] == "remote"
        seqs = [e["dataid"] for e in h.received]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "S6F11 out of order or gapped"
        # Disabled: no S6F11 for state changes any more.
        assert h.ask(2, 37, {"CEED": False, "CEID": [1]}).get() == 0
        h.wait(lambda: h.ask(1, 3, [1]).get() == ["stopped"], "stopped")
        n = len(h.received)
        assert rcmd(h, "reset")["HCACK"] == 0
        h.wait(lambda: h.ask(1, 3, [1]).get() != ["stopped"], "resetting")
        # No report of that change for 0.3 s (a report would be in by then: S6F11 goal 50 ms).
        assert holds_sync(lambda: all(e["ceid"] != 1 for e in h.received[n:]), duration_s=0.3)
        assert h.ask(2, 37, {"CEED": True, "CEID": []}).get() == 0


def test_alarms_set_and_clear_and_enable(gem_booth: GemBooth) -> None:
    stack = gem_booth.stack
    with gem_booth.host() as h:
        assert h.ask(5, 3, {"ALED": 0x80, "ALID": 20}).get() == 0
        stack.fault("door_open")
        try:
            h.wait(lambda: any(a["alid"] == 20 and a["alcd"] & 0x80 for a in h.alarms),
                   "S5F1 door_open set")
            listed = {r["ALID"]: r for r in h.ask(5, 5, [20]).get()}
            assert listed[20]["ALCD"] & 0x80
        finally:
            stack.clear("door_open")
        h.wait(lambda: any(a["alid"] == 20 and not a["alcd"] & 0x80 for a in h.alarms),
               "S5F1 door_open cleared")
        assert not h.ask(5, 5, [20]).get()[0]["ALCD"] & 0x80
        assert any(e["ceid"] == 2 for e in h.received) and any(e["ceid"] == 3 for e in h.received)
        # Disabled: the next door alarm sends no S5F1 (its S6F11 still goes).
        assert h.ask(5, 3, {"ALED": 0, "ALID": 20}).get() == 0
        assert 20 not in {r["ALID"] for r in h.ask(5, 7).get()}
        n_alarms, n_events = len(h.alarms), len(h.received)
        stack.fault("door_open")
        try:
            h.wait(lambda: any(e["ceid"] == 2 for e in h.received[n_events:]), "alarm_set event")
        finally:
            stack.clear("door_open")
        h.wait(lambda: any(e["ceid"] == 3 for e in h.received[n_events:]), "alarm_cleared")
        assert not [a for a in h.alarms[n_alarms:] if a["alid"] == 20]
        assert h.ask(5, 3, {"ALED": 0x80, "ALID": 20}).get() == 0
        assert h.ask(5, 3, {"ALED": 0x80, "ALID": 4242}).get() == 1


def test_recipes_clock_and_terminal(gem_booth: GemBooth) -> None:
    with gem_booth.host() as h:
        assert "demo" in h.ask(7, 19).get()
        ppid, body = h.request_process_program("demo")
        recipe = json.loads(body)
        assert ppid == "demo" and "dips" in recipe
        assert h.send_process_program("gem_copy", json.dumps(recipe)) == 0
        assert "gem_copy" in h.ask(7, 19).get()
        # Validated by the booth's own recipe check: refused, nothing stored.
        assert h.send_process_program("gem_bad", json.dumps({"dips": "no"})) == 6
        assert "gem_bad" not in h.ask(7, 19).get()
        assert h.ask(7, 5, "nope").get() == {"PPID": None, "PPBODY": None}  # L[0]: unknown
        # Clock: the host's time is the equipment's GEM time from now on.
        assert h.ask(2, 31, "2030010203040500").get() == 0
        assert h.ask(2, 17).get().startswith("20300102030")
        assert h.ask(2, 31, "garbage").get() == 1
        now = time.strftime("%Y%m%d%H%M%S") + "00"
        assert h.ask(2, 31, now).get() == 0
        assert h.ask(10, 3, {"TID": 1, "TEXT": "please load lot 42"}).get() == 0
    log = (gem_booth.stack.workdir / "supervisor.log").read_text()
    assert "please load lot 42" in log


def test_unknown_messages_get_s9(gem_booth: GemBooth) -> None:
    with gem_booth.host() as h:
        got: list[int] = []
        h.register_stream_function(9, 5, lambda handler, msg: got.append(5))
        h.register_stream_function(9, 3, lambda handler, msg: got.append(3))
        h.send_stream_function(h.stream_function(1, 21)())  # not served: S9F5
        h.wait(lambda: 5 in got, "S9F5")


def test_the_same_command_table_through_mqtt_and_gem(gem_booth: GemBooth) -> None:
    """Both links command one booth through one authority: the same accept/refuse."""
    table: list[tuple[str, dict[str, Any]]] = [
        ("frobnicate", {}),
        ("reset", {}),
        ("stop", {}),
        ("unhold", {}),
        ("start_job", {"lot_id": "T1", "recipe": "nope", "units": 1}),
        ("start_job", {"lot_id": "T1", "recipe": "demo", "units": 0}),
        ("ack_alarm", {"alarm_id": "all"}),
        ("refresh", {"what": "nope"}),
        ("get_status", {}),
        ("hold", {}),
    ]
    hcack = {None: 0, "unknown_command": 1, "invalid_state": 2, "interlock": 2, "busy": 2,
             "bad_request": 3, "unknown_recipe": 3, "invalid_recipe": 3}
    with gem_booth.host() as h:

        def stopped() -> None:
            # Each link meets the booth in the same state: stopped.
            if h.ask(1, 3, [1]).get() != ["stopped"]:
                mqtt_send(gem_booth.stack, "stop")
                h.wait(lambda: h.ask(1, 3, [1]).get() == ["stopped"], "stopped")

        for command, args in table:
            stopped()
            mqtt = mqtt_send(gem_booth.stack, command, args or None)
            code = None if mqtt["ok"] else mqtt["error"]["code"]
            stopped()
            params = [[k, secsgem.secs.variables.U4(v) if isinstance(v, int) else v]
                      for k, v in args.items()]
            got = rcmd(h, command, params)["HCACK"]
            assert got == hcack[code], f"{command} {args}: MQTT {code}, GEM HCACK {got}"
