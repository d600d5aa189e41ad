"""Exactly one reply per command, and a repeated request_id answered with the first reply and
not run again: for refusals, across a restart, after a kill -9 mid-command, and while the
command inbox is full."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from booth_ctl.links.mqtt import records_and_link
from booth_ctl.records import RecordStore
from devkit.broker import Broker
from tests._util import ROOT
from tests.booth_ctl._mes_helpers import (
    FakeController,
    MesBooth,
    booth_config,
    mes_booth,
    mes_client,
    ready_now,
    running_link,
)

pytestmark = pytest.mark.mqtt


@pytest.fixture
async def booth(tmp_path: Path, broker: Broker) -> AsyncIterator[MesBooth]:
    async with mes_booth(tmp_path, broker.port) as b:
        yield b


def _code(reply: dict[str, Any]) -> str | None:
    return reply["error"]["code"] if reply["error"] else None


# ---------------------------------------------------------------------- refusals are on record


async def test_an_unknown_command_is_on_record_and_answers_its_repeat(booth: MesBooth) -> None:
    mes, ctl = booth.mes, booth.ctl
    first = await mes.request("rset", request_id="typo-1")
    assert _code(first) == "unknown_command"
    # The MES notices its typo and resends under the same request_id: the first reply again,
    # and the reset does not run.
    await mes.publish("reset", {"request_id": "typo-1"})
    assert await mes.reply_to("typo-1", 2) == first
    assert ctl.count("reset") == 0
    [entry] = booth.audit("typo-1")
    assert entry["command"] == "rset" and entry["reply"] == first and entry["state"] == "done"


async def test_a_schema_refusal_is_on_record_and_answers_its_repeat(booth: MesBooth) -> None:
    mes, ctl = booth.mes, booth.ctl
    first = await mes.request("reset", {"force": True}, request_id="schema-1")
    assert _code(first) == "bad_request"
    await mes.publish("reset", {"request_id": "schema-1"})
    assert await mes.reply_to("schema-1", 2) == first
    assert ctl.count("reset") == 0
    [entry] = booth.audit("schema-1")
    assert entry["args"] == {"force": True} and entry["reply"] == first


async def test_a_payload_with_a_lone_surrogate_is_on_record_escaped(booth: MesBooth) -> None:
    mes, ctl = booth.mes, booth.ctl
    await mes.publish("reset", b'{"request_id": "sur-1", "note": "\\ud800"}')
    first = await mes.reply_to("sur-1")
    assert _code(first) == "bad_request" and "surrogate" in first["error"]["message"]
    await mes.publish("reset", {"request_id": "sur-1"})
    assert await mes.reply_to("sur-1", 2) == first
    assert ctl.count("reset") == 0
    [entry] = booth.audit("sur-1")
    assert "\\ud800" in entry["args"]["as_received"]


async def test_a_request_id_that_cannot_be_kept_is_refused_each_time(booth: MesBooth) -> None:
    mes, ctl = booth.mes, booth.ctl
    long_id = "L" * 65
    for n in (1, 2):
        await mes.publish("reset", {"request_id": long_id})
        assert _code(await mes.reply_to(long_id, n)) == "bad_request"
    # A lone surrogate in the request_id itself: refused, never on record.
    await mes.publish("reset", b'{"request_id": "x\\ud800"}')
    await mes.publish("reset", b'{"request_id": "x\\ud800"}')
    await mes.until(
        lambda: len([r for r in mes.replies if r["request_id"] == "x\ud800"]) == 2,
        5, "two replies to the surrogate request_id",
    )
    assert ctl.count("reset") == 0
    with RecordStore(booth.store_path) as store:
        assert store.command_audit() == []


async def test_a_local_mode_refusal_answers_its_repeat_after_remote_again(booth: MesBooth) -> None:
    mes, ctl = booth.mes, booth.ctl
    with RecordStore(booth.store_path) as store:
        store.set_mode("local", who="operator")
    first = await mes.request("reset", request_id="mode-1")
    assert _code(first) == "invalid_state"
    with RecordStore(booth.store_path) as store:
        store.set_mode("remote", who="operator")
    await mes.publish("reset", {"request_id": "mode-1"})
    assert await mes.reply_to("mode-1", 2) == first
    assert ctl.count("reset") == 0


async def test_a_refusal_answers_its_repeat_after_a_restart(tmp_path: Path, broker: Broker) -> None:
    loaded = booth_config(tmp_path, broker.port)
    async with mes_client(broker.port, loaded.config.booth_id) as mes:
        async with running_link(loaded, FakeController()):
            first = await mes.request("rset", request_id="typo-restart")
        ctl = FakeController()
        async with running_link(loaded, ctl):
            await mes.publish("reset", {"request_id": "typo-restart"})
            assert await mes.reply_to("typo-restart", 2) == first
        assert ctl.count("reset") == 0


# ---------------------------------------------------------------------- a kill -9 mid-command

#: Runs one ``reset`` through the real command authority and record store; the controller kills the
#: process (SIGKILL) in the middle of it, after the command is on record as running.
DIES_IN_RESET = textwrap.dedent(
    """
    import asyncio, json, os, signal, sys
    from booth_ctl.commands import Authority, RecipeBook, Source, recipe_check
    from booth_ctl.config._booth import load_config
    from booth_ctl.records import Records
    from booth_ctl.records import RecordStore
    from tests.booth_ctl._mes_helpers import FakeController, ready_now

    class DiesInReset(FakeController):
        def reset(self):
            os.kill(os.getpid(), signal.SIGKILL)

    async def main(config, rid):
        loaded = load_config(config)
        cfg = loaded.config
        store = RecordStore(cfg.records.path)
        async with Records(store) as records:
            book = RecipeBook(loaded.resolve(cfg.records.recipes_dir), store)
            authority = Authority(
                DiesInReset(), records, book, recipe_check(cfg), ready=ready_now()
            )
            await authority.submit_raw(
                "reset", json.dumps({"request_id": rid}).encode(), Source("mqtt")
            )

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


async def test_a_command_cut_short_by_a_kill_is_not_run_again(
    tmp_path: Path, broker: Broker
) -> None:
    loaded = booth_config(tmp_path, broker.port)
    rid = "killed-1"
    proc = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", DIES_IN_RESET, str(loaded.path), rid],
        cwd=ROOT, capture_output=True, timeout=60,
    )
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    with RecordStore(loaded.config.records.path) as store:
        [entry] = [a for a in store.command_audit() if a["request_id"] == rid]
    assert entry["command"] == "reset" and entry["state"] == "running"

    ctl = FakeController()
    async with (
        mes_client(broker.port, loaded.config.booth_id) as mes,
        # The supervisor's wiring: settles it.
        records_and_link(loaded, ctl, ready_now()) as (_, link),
    ):
        await asyncio.wait_for(link.connected.wait(), 10.0)
        await mes.publish("reset", {"request_id": rid})
        reply = await mes.reply_to(rid)
        assert _code(reply) == "invalid_state", reply
        assert reply["error"]["details"] == {"cut_short": True}
        assert "cut short" in reply["error"]["message"]
        # Asked again, the same answer; and a new request_id runs as usual.
        await mes.publish("stop", {"request_id": rid})
        assert await mes.reply_to(rid, 2) == reply
        assert (await mes.request("reset"))["ok"]
    assert ctl.count("reset") == 1 and ctl.count("stop") == 0
    with RecordStore(loaded.config.records.path) as store:
        [entry] = [a for a in store.command_audit() if a["request_id"] == rid]
    assert entry["state"] == "cut_short" and entry["reply"] == reply


async def test_a_state_changing_command_is_on_record_before_it_runs(booth: MesBooth) -> None:
    seen: list[list[dict[str, Any]]] = []
    ctl = booth.ctl
    original = ctl.reset

    def reset() -> dict[str, Any]:
        # What the record store holds while the controller runs the command.
        seen.append(booth.audit("before-1"))
        return original()

    ctl.reset = reset  # type: ignore[method-assign]
    reply = await booth.mes.request("reset", request_id="before-1")
    assert reply["ok"]
    [[during]] = seen
    assert during["state"] == "running" and during["command"] == "reset"
    assert during["reply"]["error"]["details"] == {"cut_short": True}
    [after] = booth.audit("before-1")
    assert after["state"] == "done" and after["reply"] == reply


# ---------------------------------------------------------------------- a full inbox


async def test_a_repeat_at_a_full_inbox_gets_its_first_reply(
    tmp_path: Path, broker: Broker
) -> None:
    loaded = booth_config(tmp_path, broker.port, command_queue_max=1)
    ctl = FakeController()
    async with running_link(loaded, ctl), mes_client(broker.port, loaded.config.booth_id) as mes:
        first = await mes.request("reset", request_id="first")
        assert first["ok"]
        # Hold the store's write lock: the next command stalls on its audit write, one more
        # waits in the inbox, and the rest meet a full inbox.
        locker = sqlite3.connect(loaded.config.records.path, isolation_level=None)
        try:
            locker.execute("BEGIN EXCLUSIVE")
            for rid in ("s0", "s1", "s2", "s3"):
                await mes.publish("get_status", {"request_id": rid})
            await mes.publish("reset", {"request_id": "first"})
            again = await mes.reply_to("first", 2)
            # Answered from the record while the store's own connection is still held.
            assert again == first
            assert not [r for r in mes.replies if r["request_id"] == "s0"]
            # Not on record: refused busy, as before.
            assert _code(await mes.reply_to("s3")) == "busy"
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        assert (await mes.reply_to("s0"))["ok"]
        for rid in ("s1", "s2"):
            await mes.reply_to(rid)
        await mes.request("get_status", request_id="marker")
    assert ctl.count("reset") == 1
    counts = {r["request_id"]: 0 for r in mes.replies}
    for r in mes.replies:
        counts[r["request_id"]] += 1
    assert counts == {"first": 2, "s0": 1, "s1": 1, "s2": 1, "s3": 1, "marker": 1}, counts


async def test_every_command_of_a_burst_gets_exactly_one_reply(
    tmp_path: Path, broker: Broker
) -> None:
    # A small reply queue and a large inbox: the link keeps room for every reply it owes.
    loaded = booth_config(tmp_path, broker.port, queue_max=10, command_queue_max=64)
    async with (
        running_link(loaded, FakeController()),
        mes_client(broker.port, loaded.config.booth_id) as mes,
    ):
        rids = [f"burst-{i}" for i in range(60)]
        await asyncio.gather(
            *(mes.publish("get_status", {"request_id": rid}) for rid in rids)
        )
        await mes.until(
            lambda: {r["request_id"] for r in mes.replies} >= set(rids), 20, "60 replies"
        )
        marker = await mes.request("get_status")
    got = [r["request_id"] for r in mes.replies]
    assert sorted(got) == sorted([*rids, marker["request_id"]])
