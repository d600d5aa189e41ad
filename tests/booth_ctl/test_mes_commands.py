"""Every MES command and every error code, through a real Mosquitto."""

from __future__ import annotations

import copy
import json
import sqlite3
import tomllib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from booth_ctl.config._booth import load_config
from booth_ctl.control._controller import Controller
from booth_ctl.records import Records, RecordStore
from devkit.broker import Broker
from tests._util import CONFIG_DIR, render_config, wait_for
from tests.booth_ctl._mes_helpers import (
    FakeController,
    Mes,
    MesBooth,
    booth_config,
    mes_booth,
    mes_client,
    response_props,
    running_link,
)
from tests.booth_ctl._plant import Loop, Plant

pytestmark = pytest.mark.mqtt

DEMO: dict[str, Any] = tomllib.loads((CONFIG_DIR / "recipes" / "demo.toml").read_text())


@pytest.fixture
async def booth(tmp_path: Path, broker: Broker) -> AsyncIterator[MesBooth]:
    async with mes_booth(tmp_path, broker.port) as b:
        yield b


def _error(reply: dict[str, Any], code: str) -> dict[str, Any]:
    assert reply["ok"] is False, reply
    assert reply["result"] is None
    assert reply["error"]["code"] == code, reply
    err: dict[str, Any] = reply["error"]
    return err


async def test_state_commands_go_to_the_controller(booth: MesBooth) -> None:
    mes, ctl = booth.mes, booth.ctl
    for command, state in [
        ("reset", "idle"),
        ("stop", "stopped"),
        ("reset", "idle"),
        ("abort", "aborted"),
        ("clear", "stopped"),
    ]:
        reply = await mes.request(command)
        assert reply["ok"] is True and reply["error"] is None, reply
        assert reply["command"] == command
        assert reply["result"] == {"state": state}
    assert ctl.state == "stopped"


async def test_start_job_hold_unhold_and_get_job(booth: MesBooth) -> None:
    mes, ctl = booth.mes, booth.ctl
    await mes.request("reset")
    reply = await mes.request("start_job", {"lot_id": "LOT-1", "recipe": "demo", "units": 3})
    assert reply["ok"], reply
    assert reply["result"]["recipe_hash"] and reply["result"]["units"] == 3
    assert ctl.calls[-1] == ("start_job", ("LOT-1", "demo", 3))
    assert (await mes.request("hold"))["result"] == {"state": "held"}
    assert (await mes.request("unhold"))["result"] == {"state": "execute"}
    job = (await mes.request("get_job", {"lot_id": "LOT-1"}))["result"]
    assert job["lot_id"] == "LOT-1" and job["recipe"] == "demo" and job["state"] == "running"
    assert job["recipe_hash"] == reply["result"]["recipe_hash"]


async def test_ack_alarm_one_or_all(booth: MesBooth) -> None:
    assert (await booth.mes.request("ack_alarm", {"alarm_id": "a7"}))["ok"]
    assert (await booth.mes.request("ack_alarm", {"alarm_id": "all"}))["ok"]
    assert [c for c in booth.ctl.calls if c[0] == "ack_alarm"] == [
        ("ack_alarm", ("a7",)),
        ("ack_alarm", (None,)),
    ]


async def test_get_status_has_mode_and_ts(booth: MesBooth) -> None:
    status = (await booth.mes.request("get_status"))["result"]
    assert {"state", "ready", "job", "alarms", "interlocks", "mode", "ts"} <= set(status)
    assert status["mode"] == "remote"


async def test_recipes_put_get_list(booth: MesBooth) -> None:
    mes = booth.mes
    listed = (await mes.request("list_recipes"))["result"]["recipes"]
    assert {"name": "demo", "file": True, "versions": 0, "hash": None} in listed
    got = (await mes.request("get_recipe", {"name": "demo"}))["result"]
    assert got["source"] == "file" and got["recipe"] == DEMO

    changed = copy.deepcopy(DEMO)
    changed["o2_limit_ppm"] = 500.0
    put = await mes.request("put_recipe", {"name": "fine", "recipe": changed})
    assert put["ok"], put
    assert put["result"]["version"] == 1
    text = (CONFIG_DIR / "recipes" / "demo.toml").read_text()
    put2 = await mes.request("put_recipe", {"name": "fine", "recipe": text})
    assert put2["ok"] and put2["result"]["version"] == 2
    got = (await mes.request("get_recipe", {"name": "fine"}))["result"]
    assert got["source"] == "mes" and got["recipe"] == DEMO and got["version"] == 2
    listed = (await mes.request("list_recipes"))["result"]["recipes"]
    fine = next(r for r in listed if r["name"] == "fine")
    assert fine["versions"] == 2 and fine["file"] is False and fine["hash"] == got["hash"]
    # A job runs the stored version and records its hash.
    await mes.request("reset")
    started = await mes.request("start_job", {"lot_id": "L2", "recipe": "fine", "units": 1})
    assert started["ok"] and started["result"]["recipe_hash"] == got["hash"]


async def test_invalid_recipe_names_every_problem(booth: MesBooth) -> None:
    bad = copy.deepcopy(DEMO)
    bad["o2_limit_ppm"] = 20000
    bad["flux"]["solids_wt_pct"] = 50
    err = _error(await booth.mes.request("put_recipe", {"name": "bad", "recipe": bad}),
                 "invalid_recipe")
    problems = err["details"]["problems"]
    assert any("o2_limit_ppm" in p for p in problems)
    assert any("solids_wt_pct" in p for p in problems)
    assert "2 problems" in err["message"]
    err = _error(await booth.mes.request("put_recipe", {"name": "bad", "recipe": "x = = 1"}),
                 "invalid_recipe")
    assert "TOML" in err["message"]
    listed = (await booth.mes.request("list_recipes"))["result"]["recipes"]
    assert "bad" not in {r["name"] for r in listed}


@pytest.mark.parametrize("name", ["../etc/passwd", "a/b", "demo.toml", "..", "", "x" * 65])
async def test_path_like_recipe_names_are_refused(booth: MesBooth, name: str) -> None:
    err = _error(await booth.mes.request("put_recipe", {"name": name, "recipe": DEMO}),
                 "bad_request")
    assert "name" in err["message"]
    _error(await booth.mes.request("get_recipe", {"name": name}), "bad_request")


async def test_unknown_recipe(booth: MesBooth) -> None:
    await booth.mes.request("reset")
    err = _error(
        await booth.mes.request("start_job", {"lot_id": "L", "recipe": "nope", "units": 1}),
        "unknown_recipe",
    )
    assert "nope" in err["message"]
    _error(await booth.mes.request("get_recipe", {"name": "nope"}), "unknown_recipe")
    assert booth.ctl.count("start_job") == 0


async def test_invalid_state_and_interlock_from_the_controller(booth: MesBooth) -> None:
    mes, ctl = booth.mes, booth.ctl
    err = _error(await mes.request("hold"), "invalid_state")
    assert "stopped" in err["message"]
    await mes.request("reset")
    ctl.interlocks["door_closed"] = False
    ctl.interlocks["o2_ok"] = False
    err = _error(
        await mes.request("start_job", {"lot_id": "L", "recipe": "demo", "units": 1}), "interlock"
    )
    assert err["details"]["unmet"] == ["door_closed", "o2_ok"]
    assert "door_closed" in err["message"]


async def test_busy_from_the_controller(booth: MesBooth) -> None:
    booth.ctl.busy = True
    _error(await booth.mes.request("reset"), "busy")


async def test_unknown_command(booth: MesBooth) -> None:
    err = _error(await booth.mes.request("fly"), "unknown_command")
    assert "fly" in err["message"] and "reset" in err["message"]


@pytest.mark.parametrize(
    ("command", "args", "needle"),
    [
        ("reset", {"force": True}, "force: unexpected field"),
        ("start_job", {"lot_id": "L", "recipe": "demo"}, "units: Field required"),
        ("start_job", {"lot_id": "L", "recipe": "demo", "units": "3"}, "units"),
        ("start_job", {"lot_id": "L", "recipe": "demo", "units": 0}, "units"),
        ("start_job", {"lot_id": "", "recipe": "demo", "units": 1}, "lot_id"),
        ("ack_alarm", {}, "alarm_id: Field required"),
        ("get_job", {"lot_id": 5}, "lot_id"),
        ("refresh", {}, "what: Field required"),
        ("refresh", {"what": ""}, "what"),
        ("refresh", {"what": "flux", "all": True}, "all: unexpected field"),
    ],
)
async def test_wrong_schema_is_a_bad_request_naming_the_field(
    booth: MesBooth, command: str, args: dict[str, Any], needle: str
) -> None:
    if command == "start_job":
        await booth.mes.request("reset")
    err = _error(await booth.mes.request(command, args), "bad_request")
    assert needle in err["message"], err
    assert booth.ctl.count("start_job") == 0

async def test_bad_request_id_is_answered_when_it_can_be_read(booth: MesBooth) -> None:
    long_id = "r" * 65
    await booth.mes.publish("reset", {"request_id": long_id})
    err = _error(await booth.mes.reply_to(long_id), "bad_request")
    assert "request_id" in err["message"]
    assert booth.ctl.count("reset") == 0


async def test_unreadable_requests_are_dropped_and_the_link_goes_on(booth: MesBooth) -> None:
    mes = booth.mes
    await mes.publish("reset", b"not json {")
    await mes.publish("reset", {"no_request_id": 1})
    await mes.publish("reset", {"request_id": 17})
    await mes.publish("reset", b"[1, 2]")
    reply = await mes.request("get_status")
    assert reply["ok"]
    # Commands are answered in order: nothing came before this reply.
    assert mes.replies == [reply]
    assert booth.ctl.count("reset") == 0


async def test_duplicate_request_id_gets_the_first_reply_and_runs_once(booth: MesBooth) -> None:
    mes, ctl = booth.mes, booth.ctl
    rid = "dup-" + uuid.uuid4().hex
    first = await mes.request("reset", request_id=rid)
    await mes.publish("reset", {"request_id": rid})
    await mes.publish("stop", {"request_id": rid, "extra": 1})
    assert await mes.reply_to(rid, 2) == first
    assert await mes.reply_to(rid, 3) == first
    assert ctl.count("reset") == 1 and ctl.count("stop") == 0


async def test_duplicate_request_id_across_a_restart(tmp_path: Path, broker: Broker) -> None:
    loaded = booth_config(tmp_path, broker.port)
    rid = "restart-" + uuid.uuid4().hex
    async with mes_client(broker.port, loaded.config.booth_id) as mes:
        ctl1 = FakeController()
        async with running_link(loaded, ctl1):
            first = await mes.request("reset", request_id=rid)
        assert ctl1.count("reset") == 1
        ctl2 = FakeController()
        async with running_link(loaded, ctl2):
            await mes.publish("reset", {"request_id": rid})
            assert await mes.reply_to(rid, 2) == first
        assert ctl2.count("reset") == 0


async def test_the_audit_records_who_what_when_and_the_reply(booth: MesBooth) -> None:
    reply = await booth.mes.request("reset", request_id="audit-1")
    with RecordStore(booth.store_path) as store:
        audit = store.command_audit()
    entry = next(a for a in audit if a["request_id"] == "audit-1")
    assert entry["command"] == "reset" and entry["who"] == "mes" and entry["reply"] == reply
    assert entry["received_at"] > 0


async def test_local_mode_refuses_all_but_get_and_list(booth: MesBooth) -> None:
    mes = booth.mes
    with RecordStore(booth.store_path) as store:
        store.set_mode("local", who="operator")
    err = _error(await mes.request("reset"), "invalid_state")
    assert "local mode" in err["message"]
    _error(await mes.request("put_recipe", {"name": "x", "recipe": DEMO}), "invalid_state")
    assert (await mes.request("get_status"))["result"]["mode"] == "local"
    assert (await mes.request("list_recipes"))["ok"]
    assert booth.ctl.count("reset") == 0
    # The retained status shows the mode once the link has read it back.
    await wait_for(
        lambda: mes.status and mes.status[-1]["mode"] == "local",
        timeout_s=5, what="status with mode local",
    )
    with RecordStore(booth.store_path) as store:
        store.set_mode("remote", who="operator")
    assert (await mes.request("reset"))["ok"]


async def test_mqtt5_response_topic_and_correlation_data(booth: MesBooth) -> None:
    mes = booth.mes
    await mes.client.subscribe("mes/replies/42", qos=1)
    props = response_props("mes/replies/42", b"corr-\x00\x01")
    await mes.publish("get_status", {"request_id": "rt-1"}, props=props)
    on_reply_topic = await mes.reply_to("rt-1")
    await wait_for(lambda: mes.other, timeout_s=5, what="reply on the response topic")
    msg = mes.other[0]
    assert msg.topic.value == "mes/replies/42"
    assert msg.properties is not None and msg.properties.CorrelationData == b"corr-\x00\x01"
    assert json.loads(msg.payload) == on_reply_topic  # type: ignore[arg-type]


async def test_busy_when_commands_pile_up(tmp_path: Path, broker: Broker) -> None:
    loaded = booth_config(tmp_path, broker.port, command_queue_max=2)
    ctl = FakeController()
    async with running_link(loaded, ctl), mes_client(broker.port, loaded.config.booth_id) as mes:
        # Hold the store's write lock: the first command stalls on its audit write, the
        # inbox fills, and what comes after it is refused at once.
        locker = sqlite3.connect(loaded.config.records.path, isolation_level=None)
        try:
            locker.execute("BEGIN EXCLUSIVE")
            rids = [f"b{i}" for i in range(8)]
            for rid in rids:
                await mes.publish("get_status", {"request_id": rid})
            busy_rid = rids[-1]
            err = _error(await mes.reply_to(busy_rid), "busy")
            assert "waiting" in err["message"]
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        replies = [await mes.reply_to(rid) for rid in rids]
        assert replies[0]["ok"]
        codes = [r["error"]["code"] if r["error"] else None for r in replies]
        assert "busy" in codes and codes.count(None) >= 1
        # A busy command may simply be sent again: it was not put on record.
        await mes.publish("get_status", {"request_id": busy_rid})
        again = await mes.reply_to(busy_rid, 2)
        assert again["ok"], again


# ---------------------------------------------------------------------------- refresh


class RefreshBooth:
    """The real controller on a virtual-clock plant behind the link; ``scan`` is one scan with
    its events handed to the records, as the runtime does."""

    def __init__(self, loop: Loop, mes: Mes, records: Records, path: Path) -> None:
        self.loop = loop
        self.ctl: Controller = loop.ctl
        self.mes = mes
        self.records = records
        self.path = path

    async def scan(self) -> list[Any]:
        self.loop.tick()
        for ev in self.loop.last.events:
            await self.records.put(ev)
        return list(self.loop.last.events)

    async def alarm_ids(self) -> set[str]:
        status = (await self.mes.request("get_status"))["result"]
        return {a["id"] for a in status["alarms"]}

    async def event(self, kind: str, **fields: Any) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            return next(
                (e for e in self.mes.events
                 if e["type"] == kind and all(e.get(k) == v for k, v in fields.items())),
                None,
            )

        return await self.mes.until(found, 5.0, f"event {kind} {fields}")


@pytest.fixture
async def refresh_booth(tmp_path: Path, broker: Broker) -> AsyncIterator[RefreshBooth]:
    def over(d: dict[str, Any]) -> None:
        d["mqtt"].update(port=broker.port, reconnect_min_s=0.02, reconnect_max_s=0.3)
        d["limits"].update(vessel_dips_warn=3, flux_dips_warn=2)

    loaded = load_config(render_config(tmp_path, overrides=over))
    path = loaded.resolve(loaded.config.records.path)
    loop = Loop(Plant(loaded), Controller(loaded))
    with RecordStore(path, request_id_keep_s=loaded.config.mqtt.request_id_keep_s) as store:
        # Three solder dips and two flux dips since the last refresh, from an earlier run.
        for kind, data in [("dip", {"vessel": "solder1"})] * 3 + [("flux_dip", {})] * 2:
            store.record_event(kind, data)
        store.mark_delivered(store.last_seq())
        loop.ctl.restore_counters(*store.dip_counts())  # as the daemon does at start
        loop.run_for(3.1)  # past the start-up grace of the condition alarms
        async with (
            running_link(loaded, loop.ctl, store=store) as (_, records),
            mes_client(broker.port, loaded.config.booth_id) as mes,
        ):
            booth = RefreshBooth(loop, mes, records, path)
            await booth.scan()
            yield booth


async def test_refresh_restarts_the_count_clears_the_warning_and_survives_a_restart(
    refresh_booth: RefreshBooth,
) -> None:
    b = refresh_booth
    assert {"vessel_dips.solder1", "flux_dips"} <= await b.alarm_ids()
    reply = await b.mes.request("refresh", {"what": "solder1"})
    assert reply["ok"] is True and reply["error"] is None, reply
    assert reply["result"] == {"what": "solder1", "dips_before": 3}
    assert b.ctl.counters() == {"vessel_dips": {"solder1": 0}, "flux_dips": 2}
    # Cleared by the command: no scan ran since.
    ids = await b.alarm_ids()
    assert "vessel_dips.solder1" not in ids and "flux_dips" in ids
    # The next scan's events: stored, then on `events`, in this order.
    assert [e.type for e in await b.scan()] == ["refreshed", "alarm_cleared"]
    refreshed = await b.event("refreshed", what="solder1")
    cleared = await b.event("alarm_cleared", id="vessel_dips.solder1")
    assert refreshed["dips_before"] == 3 and cleared["seq"] == refreshed["seq"] + 1
    # A dip after the refresh counts from 0.
    await b.records.record("dip", {"vessel": "solder1"})
    await b.records.flush()
    with RecordStore(b.path) as store:  # a restart reads the counts back from the store
        counts = store.dip_counts()
    assert counts == ({"solder1": 1}, 2)
    restarted = Controller(b.loop.plant.loaded)
    restarted.restore_counters(*counts)
    assert restarted.counters() == {"vessel_dips": {"solder1": 1}, "flux_dips": 2}


async def test_refresh_of_an_unknown_vessel_is_a_bad_request_naming_the_known_ones(
    refresh_booth: RefreshBooth,
) -> None:
    b = refresh_booth
    err = _error(await b.mes.request("refresh", {"what": "solder7"}), "bad_request")
    assert "solder7" in err["message"] and "known: flux, solder1" in err["message"]
    assert b.ctl.counters() == {"vessel_dips": {"solder1": 3}, "flux_dips": 2}
    assert not [e for e in await b.scan() if e.type in ("refreshed", "alarm_cleared")]
    assert {"vessel_dips.solder1", "flux_dips"} <= await b.alarm_ids()


async def test_refresh_in_local_mode_runs_once_per_request_id(refresh_booth: RefreshBooth) -> None:
    b = refresh_booth
    with RecordStore(b.path) as store:
        store.set_mode("local", who="operator")
    err = _error(await b.mes.request("reset"), "invalid_state")
    assert err["details"] == {"mode": "local"}
    first = await b.mes.request("refresh", {"what": "flux"}, request_id="refresh-1")
    assert first["ok"] and first["result"] == {"what": "flux", "dips_before": 2}, first
    assert "flux_dips" not in await b.alarm_ids()
    await b.scan()
    # Two flux dips later, the same request_id again: the first reply, and the count stays.
    b.ctl.restore_counters({}, 2)
    await b.mes.publish("refresh", {"request_id": "refresh-1", "what": "flux"})
    assert await b.mes.reply_to("refresh-1", 2) == first
    assert b.ctl.flux_dips == 2
    await b.scan()
    await b.records.flush()
    with RecordStore(b.path) as store:
        refreshes = [e for e in store.events() if e["type"] == "refreshed"]
        audit = [a for a in store.command_audit() if a["request_id"] == "refresh-1"]
    assert [(e["what"], e["dips_before"]) for e in refreshes] == [("flux", 2)]
    assert len(audit) == 1 and audit[0]["state"] == "done" and audit[0]["reply"] == first
    assert audit[0]["args"] == {"what": "flux"}
