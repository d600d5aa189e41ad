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

from booth_ctl._config import LoadedConfig
from booth_ctl._records import RecordStore
from devkit.broker import Broker
from tests._util import CONFIG_DIR, wait_for
from tests.booth_ctl._mes_helpers import (
    FakeController,
    Mes,
    booth_config,
    mes_client,
    response_props,
    running_link,
)

pytestmark = pytest.mark.mqtt

DEMO: dict[str, Any] = tomllib.loads((CONFIG_DIR / "recipes" / "demo.toml").read_text())


class Booth:
    def __init__(self, loaded: LoadedConfig, ctl: FakeController, mes: Mes) -> None:
        self.loaded = loaded
        self.ctl = ctl
        self.mes = mes
        self.store_path = Path(loaded.config.records.path)


@pytest.fixture
async def booth(tmp_path: Path, broker: Broker) -> AsyncIterator[Booth]:
    loaded = booth_config(tmp_path, broker.port)
    ctl = FakeController()
    async with running_link(loaded, ctl), mes_client(broker.port, loaded.config.booth_id) as mes:
        yield Booth(loaded, ctl, mes)


def _error(reply: dict[str, Any], code: str) -> dict[str, Any]:
    assert reply["ok"] is False, reply
    assert reply["result"] is None
    assert reply["error"]["code"] == code, reply
    err: dict[str, Any] = reply["error"]
    return err


async def test_state_commands_go_to_the_controller(booth: Booth) -> None:
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


async def test_start_job_hold_unhold_and_get_job(booth: Booth) -> None:
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


async def test_ack_alarm_one_or_all(booth: Booth) -> None:
    assert (await booth.mes.request("ack_alarm", {"alarm_id": "a7"}))["ok"]
    assert (await booth.mes.request("ack_alarm", {"alarm_id": "all"}))["ok"]
    assert [c for c in booth.ctl.calls if c[0] == "ack_alarm"] == [
        ("ack_alarm", ("a7",)),
        ("ack_alarm", (None,)),
    ]


async def test_get_status_has_mode_and_ts(booth: Booth) -> None:
    status = (await booth.mes.request("get_status"))["result"]
    assert {"state", "ready", "job", "alarms", "interlocks", "mode", "ts"} <= set(status)
    assert status["mode"] == "remote"


async def test_recipes_put_get_list(booth: Booth) -> None:
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


async def test_invalid_recipe_names_every_problem(booth: Booth) -> None:
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
async def test_path_like_recipe_names_are_refused(booth: Booth, name: str) -> None:
    err = _error(await booth.mes.request("put_recipe", {"name": name, "recipe": DEMO}),
                 "bad_request")
    assert "name" in err["message"]
    _error(await booth.mes.request("get_recipe", {"name": name}), "bad_request")


async def test_unknown_recipe(booth: Booth) -> None:
    await booth.mes.request("reset")
    err = _error(
        await booth.mes.request("start_job", {"lot_id": "L", "recipe": "nope", "units": 1}),
        "unknown_recipe",
    )
    assert "nope" in err["message"]
    _error(await booth.mes.request("get_recipe", {"name": "nope"}), "unknown_recipe")
    assert booth.ctl.count("start_job") == 0


async def test_invalid_state_and_interlock_from_the_controller(booth: Booth) -> None:
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


async def test_busy_from_the_controller(booth: Booth) -> None:
    booth.ctl.busy = True
    _error(await booth.mes.request("reset"), "busy")


async def test_unknown_command(booth: Booth) -> None:
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
    ],
)
async def test_wrong_schema_is_a_bad_request_naming_the_field(
    booth: Booth, command: str, args: dict[str, Any], needle: str
) -> None:
    if command == "start_job":
        await booth.mes.request("reset")
    err = _error(await booth.mes.request(command, args), "bad_request")
    assert needle in err["message"], err
    assert booth.ctl.count("start_job") == 0

async def test_bad_request_id_is_answered_when_it_can_be_read(booth: Booth) -> None:
    long_id = "r" * 65
    await booth.mes.publish("reset", {"request_id": long_id})
    err = _error(await booth.mes.reply_to(long_id), "bad_request")
    assert "request_id" in err["message"]
    assert booth.ctl.count("reset") == 0


async def test_unreadable_requests_are_dropped_and_the_link_goes_on(booth: Booth) -> None:
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


async def test_duplicate_request_id_gets_the_first_reply_and_runs_once(booth: Booth) -> None:
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


async def test_the_audit_records_who_what_when_and_the_reply(booth: Booth) -> None:
    reply = await booth.mes.request("reset", request_id="audit-1")
    with RecordStore(booth.store_path) as store:
        audit = store.command_audit()
    entry = next(a for a in audit if a["request_id"] == "audit-1")
    assert entry["command"] == "reset" and entry["who"] == "mes" and entry["reply"] == reply
    assert entry["received_at"] > 0


async def test_local_mode_refuses_all_but_get_and_list(booth: Booth) -> None:
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


async def test_mqtt5_response_topic_and_correlation_data(booth: Booth) -> None:
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
