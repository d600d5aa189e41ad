"""A handful of bad commands through a real broker to the real MES link and controller: each is
answered once (or dropped when it has no request_id), and the link keeps serving afterwards."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from booth_ctl.control._controller import Controller
from devkit.broker import Broker
from tests.booth_ctl._mes_helpers import Mes, booth_config, mes_client, running_link

from ._dispatch import check_reply_shape

pytestmark = pytest.mark.mqtt


@dataclass
class Rig:
    mes: Mes
    ctl: Controller


@pytest.fixture
async def rig(tmp_path: Path, broker: Broker) -> AsyncIterator[Rig]:
    loaded = booth_config(tmp_path, broker.port)
    ctl = Controller(loaded)
    async with (
        running_link(loaded, ctl),
        mes_client(broker.port, loaded.config.booth_id) as mes,
    ):
        yield Rig(mes, ctl)


def _rid() -> str:
    return uuid.uuid4().hex


CASES: list[tuple[str, Any, str | None]] = [
    # (command, body, expected error code; None: no request_id, dropped)
    ("start_job", {"lot_id": "L", "recipe": "demo", "units": float("nan")}, "bad_request"),
    ("start_job", {"lot_id": "L", "recipe": "demo", "units": float("inf")}, "bad_request"),
    ("start_job", {"lot_id": "L", "recipe": "../../etc/passwd", "units": 1}, "bad_request"),
    ("get_recipe", {"name": "/etc/passwd"}, "bad_request"),
    ("reset", {"force": True}, "bad_request"),
    ("ack_alarm", {"alarm_id": ["all"]}, "bad_request"),
    ("get_job", {"lot_id": "x" * 100_000}, "bad_request"),
    ("put_recipe", {"name": "n", "recipe": "o2_limit_ppm = nan"}, "invalid_recipe"),
    ("self_destruct", {}, "unknown_command"),
    ("reset", b"{not json", None),
    ("reset", b"\xff\xfe garbage", None),
    ("reset", {"request_id": ""}, None),
    ("reset", {"request_id": 12}, None),
]


async def test_bad_commands_through_the_broker_get_one_clear_reply(rig: Rig) -> None:
    mes = rig.mes
    sent: list[tuple[str, str | None, str | None]] = []
    for command, body, code in CASES:
        if isinstance(body, bytes):
            await mes.publish(command, body)
            sent.append((command, None, code))
            continue
        rid = body.get("request_id", _rid()) if isinstance(body, dict) else _rid()
        payload = {"request_id": rid, **body}
        await mes.publish(command, json.dumps(payload).encode())
        sent.append((command, rid if code is not None else None, code))
    # A good command last: the link is still serving, and every reply before it has arrived.
    marker = await mes.request("get_status")
    assert marker["ok"] is True and marker["result"]["state"] == "stopped"
    for command, rid, code in sent:
        if rid is None:
            continue
        mine = [r for r in mes.replies if r.get("request_id") == rid]
        assert len(mine) == 1, (command, rid, mine)
        check_reply_shape(mine[0], command, rid)
        assert mine[0]["error"]["code"] == code, mine[0]
    # Exactly one reply per answerable case plus the marker: the dropped ones got none.
    assert len(mes.replies) == sum(1 for _, rid, _ in sent if rid is not None) + 1
    assert rig.ctl.state == "stopped"
    assert not [e for e in mes.events if e.get("type") != "state_changed"], mes.events


async def test_a_repeated_request_id_over_mqtt_is_answered_the_same_and_runs_once(rig: Rig) -> None:
    mes = rig.mes
    rid = _rid()
    first = await mes.request("reset", request_id=rid)
    assert first["error"]["code"] == "interlock"
    await mes.publish("abort", {"request_id": rid})
    again = await mes.reply_to(rid, nth=2)
    assert again == first
    assert rig.ctl.state == "stopped"  # the abort under a used id never ran
