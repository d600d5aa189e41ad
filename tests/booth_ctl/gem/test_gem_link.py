"""The GEM link in-process (records on a temporary store, a raw-socket host on loopback): a port
that is taken does not stop the booth, and S6F11 follows the events outbox in order."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from booth_ctl.commands import Source
from booth_ctl.config._booth import GemConfig
from booth_ctl.links.gem import GemLink, _link
from booth_ctl.links.gem._hsms_frame import Frame, SType, control, data, parse
from booth_ctl.links.gem._secs2 import U4, B, Item, L, decode
from booth_ctl.records._recorder import Records
from booth_ctl.records._store import RecordStore
from tests._util import free_port, wait_for


class NoCommands:
    async def submit(self, command: str, body: Any, source: Any) -> dict[str, Any] | None:
        raise AssertionError("no command expected")


@pytest.fixture
async def records(tmp_path: Path) -> AsyncIterator[Records]:
    store = RecordStore(tmp_path / "records.sqlite")
    try:
        async with Records(store) as rec:
            yield rec
    finally:
        store.close()


def link(records: Records, port: int) -> GemLink:
    return GemLink(
        GemConfig(port=port), records, NoCommands(), Source("gem"),
        status=lambda: {"state": "idle", "job": None, "alarms": []},
        telemetry=lambda: {"solder_temp_c": 250.0, "o2_ppm": 12.0},
    )


class RawHost:
    def __init__(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        self.r, self.w, self.sys = r, w, 0
        self.events: list[Item] = []
        self.replies: asyncio.Queue[Frame] = asyncio.Queue()
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while True:
            n = int.from_bytes(await self.r.readexactly(4), "big")
            f = parse(await self.r.readexactly(n))
            if f.stype == SType.DATA and f.function % 2 == 1:
                if (f.stream, f.function) == (6, 11):
                    self.events.append(decode(f.text))
                reply = {(6, 11): B(0), (5, 1): B(0), (1, 13): L(B(0), L())}.get(
                    (f.stream, f.function))
                self.w.write(data(f.stream, f.function + 1, reply, device=0, system=f.system,
                                  wbit=False).to_bytes())
            else:
                await self.replies.put(f)

    async def ask(self, frame: Frame) -> Frame:
        self.w.write(frame.to_bytes())
        async with asyncio.timeout(5):
            return await self.replies.get()

    async def request(self, s: int, f: int, item: Item | None) -> Item | None:
        self.sys += 1
        reply = await self.ask(data(s, f, item, device=0, system=self.sys, wbit=True))
        return reply.item()

    async def close(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        self.w.close()


async def connect(port: int) -> RawHost:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    h = RawHost(r, w)
    assert (await h.ask(control(SType.SELECT_REQ, 999))).byte3 == 0
    await h.request(1, 13, L())
    return h


async def test_a_taken_port_is_logged_and_tried_again(
    records: Records, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(_link, "LISTEN_RETRY_S", 0.05)
    port = free_port()
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    squatter.bind(("127.0.0.1", port))
    squatter.listen()
    async with link(records, port) as gem:
        await wait_for(lambda: "cannot listen" in caplog.text, timeout_s=5,
                       what="the error naming gem.port")
        assert not gem.listening.is_set()
        squatter.close()
        await wait_for(gem.listening.is_set, timeout_s=5, what="listening once the port is free")
        h = await connect(port)
        identity = await h.request(1, 1, None)
        assert identity is not None and identity.items[0].text == "BOOTH-SI"
        await h.close()
    assert f"gem.port 127.0.0.1:{port}: cannot listen" in caplog.text


async def test_events_reach_the_host_in_order(records: Records) -> None:
    port = free_port()
    async with link(records, port) as gem:
        await wait_for(gem.listening.is_set, timeout_s=5, what="listening")
        h = await connect(port)
        svs = await h.request(1, 3, L(U4(1), U4(3), U4(4)))
        assert svs is not None and [i.python() for i in svs.items] == ["idle", 250.0, 12.0]
        seqs = []
        for i in range(30):
            seq, _ = await records.record("state_changed", {"from": "a", "to": f"s{i}"})
            seqs.append(seq)
        await wait_for(lambda: len(h.events) >= 30, timeout_s=10, what="30 S6F11")
        assert [e.items[0].scalar for e in h.events] == seqs
        assert {e.items[1].scalar for e in h.events} == {1}
        await h.close()
