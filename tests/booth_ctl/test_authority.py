"""The one command authority: role x mode rules, readiness, and the same answers whatever the link.

The same table of commands goes through two entry points, the MQTT link over a real Mosquitto
and a direct local call as another link would make it; each answer must agree, accept or refuse
with the same code. The rules themselves are pure and tested as a table.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from booth_ctl.commands import (
    COMMANDS,
    SAFETY_DIRECTION,
    Authority,
    RecipeBook,
    Source,
    allowed,
    judge,
    recipe_check,
)
from booth_ctl.config._booth import LoadedConfig
from booth_ctl.records import Records, RecordStore
from devkit.broker import Broker, running_broker
from tests.booth_ctl._mes_helpers import (
    FakeController,
    booth_config,
    mes_client,
    ready_now,
    running_link,
)

READS = {c for c in COMMANDS if c.startswith(("get_", "list_"))}
CHANGES = set(COMMANDS) - READS


class Booth(FakeController):
    def refreshed(self, what: str) -> dict[str, Any]:
        self.calls.append(("refresh", (what,)))
        return {"what": what, "dips_before": 0}


# ---------------------------------------------------------------------------- the rules (pure)


def test_a_viewer_only_reads() -> None:
    viewer = Source("hmi", user="vera", role="viewer")
    assert allowed(viewer, "local") == READS
    refused = judge("stop", viewer, "local")
    assert refused is not None and refused.code == "forbidden"


def test_operator_and_engineer_commands() -> None:
    op = Source("hmi", user="otto", role="operator")
    eng = Source("hmi", user="erin", role="engineer")
    operator = {"ack_alarm", "hold", "unhold", "stop", "abort", "set_mode"}
    assert allowed(op, "local") == READS | operator
    assert allowed(eng, "local") == set(COMMANDS)
    for cmd in ("reset", "clear", "start_job", "put_recipe", "refresh"):
        refused = judge(cmd, op, "local")
        assert refused is not None and refused.code == "forbidden", cmd


def test_in_remote_mode_a_person_at_the_booth_keeps_the_safety_direction() -> None:
    eng = Source("cli", user="erin", role="engineer")
    assert allowed(eng, "remote") == READS | SAFETY_DIRECTION
    refused = judge("reset", eng, "remote")
    assert refused is not None and (refused.code, refused.details) == (
        "invalid_state", {"mode": "remote"}
    )


@pytest.mark.parametrize("link", ["mqtt", "gem"])
def test_the_host_links_own_the_booth_in_remote_mode_only(link: str) -> None:
    host = Source(link)
    assert allowed(host, "remote") == set(COMMANDS)
    assert allowed(host, "local") == READS | {"refresh"}
    refused = judge("set_mode", host, "local")
    assert refused is not None and (refused.code, refused.details) == (
        "invalid_state", {"mode": "local"}
    )


def test_a_local_link_without_a_role_is_a_viewer() -> None:
    assert allowed(Source("hmi"), "local") == READS


# ---------------------------------------------------------------------------- one authority


@contextlib.asynccontextmanager
async def direct(
    loaded: LoadedConfig, ctl: Booth, ready: asyncio.Event | None = None
) -> AsyncIterator[tuple[Authority, RecordStore]]:
    cfg = loaded.config
    store = RecordStore(loaded.resolve(cfg.records.path))
    try:
        async with Records(store) as records:
            book = RecipeBook(loaded.resolve(cfg.records.recipes_dir), store)
            yield Authority(
                ctl, records, book, recipe_check(cfg), ready=ready or ready_now()
            ), store
    finally:
        store.close()


#: (command, arguments): every kind of answer: accepted, state refusal, bad request, unknown
#: command, unknown recipe, a repeat; in remote mode, then (after set_mode) in local mode.
TABLE: list[tuple[str, dict[str, Any]]] = [
    ("get_status", {}),
    ("hold", {}),  # invalid_state: stopped
    ("reset", {}),
    ("start_job", {"lot_id": "L1", "recipe": "nope", "units": 1}),  # unknown_recipe
    ("start_job", {"lot_id": "L1", "recipe": "demo", "units": 0}),  # bad_request
    ("launch", {}),  # unknown_command
    ("refresh", {"what": "flux"}),
    ("set_mode", {"mode": "local"}),
    ("stop", {}),  # invalid_state: local mode
    ("set_mode", {"mode": "remote"}),  # invalid_state: local mode, the host cannot take it back
    ("refresh", {"what": "flux"}),  # LOCAL_OK
    ("list_recipes", {}),
]


def _outcome(reply: dict[str, Any] | None) -> tuple[bool, str | None, Any]:
    assert reply is not None
    err = reply["error"]
    return reply["ok"], err and err["code"], err and err.get("details", {}).get("mode")


@pytest.mark.mqtt
async def test_the_same_commands_get_the_same_answers_over_mqtt_and_directly(
    tmp_path: Path, broker: Broker
) -> None:
    over_mqtt: list[tuple[bool, str | None, Any]] = []
    loaded = booth_config(tmp_path / "mqtt", broker.port)
    async with (
        running_link(loaded, Booth()),
        mes_client(broker.port, loaded.config.booth_id) as mes,
    ):
        for command, args in TABLE:
            over_mqtt.append(_outcome(await mes.request(command, args)))
    directly: list[tuple[bool, str | None, Any]] = []
    loaded = booth_config(tmp_path / "gem", broker.port)
    async with direct(loaded, Booth()) as (authority, store):
        for command, args in TABLE:
            body = {"request_id": f"gem-{uuid.uuid4().hex}", **args}
            directly.append(_outcome(await authority.submit(command, body, Source("gem"))))
        audit = store.command_audit()
    assert over_mqtt == directly
    assert over_mqtt == [
        (True, None, None),
        (False, "invalid_state", None),
        (True, None, None),
        (False, "unknown_recipe", None),
        (False, "bad_request", None),
        (False, "unknown_command", None),
        (True, None, None),
        (True, None, None),
        (False, "invalid_state", "local"),
        (False, "invalid_state", "local"),
        (True, None, None),
        (True, None, None),
    ]
    # Audited once each, with the link it came in on.
    assert len(audit) == len(TABLE)
    assert {a["source"]["link"] for a in audit} == {"gem"}


async def test_a_person_at_the_booth_is_judged_by_role_and_mode(tmp_path: Path) -> None:
    loaded = booth_config(tmp_path, 1)
    ctl = Booth()
    async with direct(loaded, ctl) as (authority, store):
        otto = Source("hmi", user="otto", role="operator")
        vera = Source("hmi", user="vera", role="viewer")

        async def send(src: Source, command: str, **args: Any) -> tuple[bool, str | None, Any]:
            body = {"request_id": f"hmi-{uuid.uuid4().hex}", **args}
            return _outcome(await authority.submit(command, body, src))

        assert await send(otto, "unhold") == (False, "invalid_state", "remote")
        assert await send(vera, "set_mode", mode="local") == (False, "forbidden", None)
        assert await send(otto, "set_mode", mode="local") == (True, None, None)
        assert store.get_mode() == "local"
        assert authority.allowed(otto) == allowed(otto, "local")
        assert await send(otto, "reset") == (False, "forbidden", None)
        assert (await send(vera, "get_status"))[0] is True
        # Any mapping will do as the body (a link may hand over a read-only view).
        body = MappingProxyType({"request_id": "hmi-view"})
        assert _outcome(await authority.submit("list_recipes", body, vera))[0] is True
        assert ctl.count("reset") == 0
        audit = store.command_audit()
    switched = next(a for a in audit if a["command"] == "set_mode" and a["reply"]["ok"])
    assert switched["source"] == {"link": "hmi", "user": "otto", "role": "operator"}
    assert switched["who"] == "otto"


async def test_before_the_runtime_is_ready_every_command_is_not_ready(tmp_path: Path) -> None:
    loaded = booth_config(tmp_path, 1)
    ready = asyncio.Event()
    ctl = Booth()
    async with direct(loaded, ctl, ready) as (authority, store):
        body = {"request_id": "r-early"}
        early = await authority.submit("reset", body, Source("mqtt"))
        status = await authority.submit("get_status", {"request_id": "s-early"}, Source("mqtt"))
        assert authority.allowed(Source("hmi", role="engineer")) == frozenset()
        assert early is not None and early["error"]["code"] == "not_ready"
        # No list of unmet permissives from an image that is not complete yet.
        assert "details" not in early["error"]
        assert status is not None and status["error"]["code"] == "not_ready"
        assert ctl.calls == [] and store.command_audit() == []
        ready.set()
        # Not on record: the same request_id is judged afresh once the booth is ready.
        again = await authority.submit("reset", body, Source("mqtt"))
        assert again is not None and again["ok"] is True
        assert ctl.count("reset") == 1


@pytest.mark.mqtt
async def test_online_and_status_wait_for_the_runtime(tmp_path: Path) -> None:
    # A broker of its own: nothing retained from other tests on the booth's topics.
    with running_broker(tmp_path / "broker") as broker:
        loaded = booth_config(tmp_path, broker.port)
        ready = asyncio.Event()
        async with (
            mes_client(broker.port, loaded.config.booth_id) as mes,
            running_link(loaded, Booth(), ready=ready, wait_connected=False) as (link, _),
        ):
            await asyncio.wait_for(link.subscribed.wait(), 10.0)
            reply = await mes.request("reset")
            assert reply["error"]["code"] == "not_ready"
            assert not link.connected.is_set()
            assert mes.status == [] and mes.online == []
            ready.set()
            await mes.until(lambda: True in mes.online, 5.0, "online true")
            # The first status went out before online said true.
            assert mes.status, "online true before any status"
            assert (await mes.request("reset"))["ok"] is True
