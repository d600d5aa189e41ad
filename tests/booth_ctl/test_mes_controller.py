"""The MES link in front of the real controller: refusals carry its codes and details."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from booth_ctl.control._controller import Controller
from devkit.broker import Broker
from tests.booth_ctl._mes_helpers import Mes, booth_config, mes_client, running_link

pytestmark = pytest.mark.mqtt


@pytest.fixture
async def mes(tmp_path: Path, broker: Broker) -> AsyncIterator[Mes]:
    loaded = booth_config(tmp_path, broker.port)
    async with (
        running_link(loaded, Controller(loaded)),
        mes_client(broker.port, loaded.config.booth_id) as client,
    ):
        yield client


async def test_a_fresh_controller_is_stopped_and_not_ready(mes: Mes) -> None:
    status = (await mes.request("get_status"))["result"]
    assert status["state"] == "stopped" and status["ready"] is False
    assert status["mode"] == "remote"


async def test_reset_without_permissives_is_an_interlock_refusal(mes: Mes) -> None:
    reply = await mes.request("reset")
    assert reply["ok"] is False and reply["error"]["code"] == "interlock", reply
    assert reply["error"]["details"]["unmet"]


async def test_commands_out_of_state_are_invalid_state(mes: Mes) -> None:
    for command in ("hold", "unhold", "clear"):
        reply = await mes.request(command)
        assert reply["error"]["code"] == "invalid_state", reply
    reply = await mes.request("start_job", {"lot_id": "L1", "recipe": "demo", "units": 1})
    assert reply["error"]["code"] == "invalid_state", reply
    assert "stopped" in reply["error"]["message"]


async def test_ack_of_an_unknown_alarm(mes: Mes) -> None:
    reply = await mes.request("ack_alarm", {"alarm_id": "nope"})
    assert reply["error"]["code"] == "bad_request" and "nope" in reply["error"]["message"]
    assert (await mes.request("ack_alarm", {"alarm_id": "all"}))["ok"]
