"""The command authority in front of the real Controller and a real record store, without MQTT.

``DispatchRig.send`` hands one raw payload to the command authority and returns its reply
together with what the controller looked like before and after (status, outputs of a scan,
events), so that a test can check that bad input changed nothing.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from booth_ctl.commands import ERROR_CODES, Authority, RecipeBook, Source, recipe_check
from booth_ctl.config._booth import LoadedConfig, load_config
from booth_ctl.control._controller import Controller
from booth_ctl.control._image import Snapshot
from booth_ctl.records import Records, RecordStore
from tests._util import render_config
from tests.booth_ctl._mes_helpers import ready_now

REPLY_KEYS = {"request_id", "command", "ok", "error", "result"}
#: Every scan of the rig happens at this instant with no readings: the result depends only on
#: the controller's state, so two scans differ only if a command changed something.
SCAN_NOW = 1.0


@dataclass
class Outcome:
    reply: dict[str, Any] | None
    status_before: dict[str, Any]
    status_after: dict[str, Any]
    outputs_before: dict[str, Any]
    outputs_after: dict[str, Any]
    #: Events the controller emitted because of the command (seen by the next scan).
    events: list[str]

    @property
    def unchanged(self) -> bool:
        return (
            self.status_before == self.status_after
            and self.outputs_before == self.outputs_after
            and not self.events
        )


class DispatchRig:
    def __init__(self, loaded: LoadedConfig, ctl: Controller, authority: Authority) -> None:
        self.loaded = loaded
        self.ctl = ctl
        self.authority = authority

    def _scan(self) -> tuple[dict[str, Any], list[str]]:
        out = self.ctl.scan(Snapshot(now=SCAN_NOW, signals={}))
        return dict(out.outputs), [e.type for e in out.events]

    async def send(self, command: str, payload: bytes) -> Outcome:
        outputs_before, _ = self._scan()
        status_before = copy.deepcopy(self.ctl.status())
        reply = await self.authority.submit_raw(command, payload, Source("mqtt"))
        status_after = copy.deepcopy(self.ctl.status())
        outputs_after, events = self._scan()
        return Outcome(reply, status_before, status_after, outputs_before, outputs_after, events)


@contextlib.asynccontextmanager
async def dispatch_rig(tmp_path: Path) -> AsyncIterator[DispatchRig]:
    loaded = load_config(render_config(tmp_path))
    cfg = loaded.config
    ctl = Controller(loaded)
    ctl.scan(Snapshot(now=SCAN_NOW, signals={}))
    store = RecordStore(loaded.resolve(cfg.records.path))
    try:
        async with Records(store) as records:
            book = RecipeBook(loaded.resolve(cfg.records.recipes_dir), store)
            authority = Authority(ctl, records, book, recipe_check(cfg), ready=ready_now())
            yield DispatchRig(loaded, ctl, authority)
    finally:
        store.close()


def readable_request_id(payload: bytes) -> str | None:
    """The request_id a reply must carry, or None when none can be read (the payload is dropped)."""
    try:
        body = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    rid = body.get("request_id") if isinstance(body, dict) else None
    return rid if isinstance(rid, str) and rid else None


def check_reply_shape(reply: dict[str, Any], command: str, rid: str) -> None:
    """A contract reply: its keys, its request, a coded error with a message, strict JSON."""
    assert set(reply) == REPLY_KEYS, reply
    assert reply["request_id"] == rid
    assert reply["command"] == command
    assert isinstance(reply["ok"], bool)
    if reply["ok"]:
        assert reply["error"] is None
    else:
        assert reply["result"] is None
        err = reply["error"]
        assert err["code"] in ERROR_CODES, err
        assert isinstance(err["message"], str) and err["message"].strip(), err
    # What goes on the wire is plain JSON: no NaN or Infinity tokens that an MES parser refuses.
    text = json.dumps(reply, allow_nan=False, default=str)
    assert json.loads(text) == json.loads(json.dumps(reply, default=str))


def finite_everywhere(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(finite_everywhere(v) for v in value.values())
    if isinstance(value, list):
        return all(finite_everywhere(v) for v in value)
    return True
