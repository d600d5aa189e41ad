"""What the broker refuses is not taken as delivered: events and replies a broker's ACL refuses
(MQTT 5 PUBACK reason code 0x87) stay with the booth, are retried with backoff and go out once
allowed; and a connection that fails at once is not re-made many times a second."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from booth_ctl.links.mqtt import STABLE_CONNECTION_S
from devkit.broker import Broker, running_broker
from tests._util import wait_for
from tests.booth_ctl._mes_helpers import (
    BOOTH_TOPICS,
    SECURE_USERS,
    FakeController,
    booth_config,
    running_link,
    secure_acl,
    secure_booth_config,
    secure_mes,
)

pytestmark = pytest.mark.mqtt

def reload_acl(broker: Broker, acl: str) -> None:
    """Give the running broker a new ACL (SIGHUP makes Mosquitto re-read it) without dropping
    any connection."""
    (broker.workdir / "acl").write_text(acl, encoding="utf-8")
    assert broker._proc is not None
    os.kill(broker._proc.pid, signal.SIGHUP)


def acl_broker(tmp_path: Path, acl: str) -> contextlib.AbstractContextManager[Broker]:
    return running_broker(tmp_path / "broker", users=SECURE_USERS, acl=acl)


def _logged(caplog: pytest.LogCaptureFixture, needle: str) -> int:
    return sum(1 for r in caplog.records if needle in r.getMessage())


@pytest.fixture
def refusing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> Iterator[Callable[[str], Broker]]:
    """Starts a broker whose ACL lets the booth publish everything but `topic`; logs the link's
    warnings; stops the broker at the end."""
    caplog.set_level(logging.WARNING, logger="booth_ctl.mes")
    with contextlib.ExitStack() as stack:

        def start(topic: str) -> Broker:
            acl = secure_acl(*(t for t in BOOTH_TOPICS if t != topic))
            return stack.enter_context(acl_broker(tmp_path, acl))

        yield start


async def test_refused_events_stay_in_the_outbox_until_the_broker_takes_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, refusing: Callable[[str], Broker]
) -> None:
    acl_broker = refusing("events")
    loaded = secure_booth_config(tmp_path, acl_broker.port)
    async with (
        secure_mes(acl_broker.port) as mes,
        running_link(loaded, FakeController()) as (link, records),
    ):
        store = records.store
        for i in range(5):
            records.submit("state_changed", {"i": i})
        await records.flush()
        # Refused round after round (5 events each), retried with backoff, logged once.
        await wait_for(lambda: link.refused_publishes >= 15, timeout_s=10, what="3 refused rounds")
        assert [e.seq for e in await records.call(store.undelivered_events)] == [1, 2, 3, 4, 5]
        assert _logged(caplog, "publishing events: the broker refuses") == 1
        assert any("0x87" in r.getMessage() for r in caplog.records)
        # Commands and replies go on meanwhile.
        assert (await mes.request("get_status"))["ok"]
        assert mes.events == []

        reload_acl(acl_broker, secure_acl(*BOOTH_TOPICS))
        await wait_for(
            lambda: store.undelivered_events() == [], timeout_s=10, what="events delivered"
        )
        await wait_for(lambda: len(mes.events) >= 5, timeout_s=5, what="5 events at the MES")
    assert [e["seq"] for e in mes.events] == [1, 2, 3, 4, 5]
    assert _logged(caplog, "publishing events: works again") == 1
    assert _logged(caplog, "publishing events: the broker refuses") == 1


async def test_refused_replies_are_kept_and_each_command_gets_exactly_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, refusing: Callable[[str], Broker]
) -> None:
    acl_broker = refusing("reply")
    # Room for a few replies only: the queue fills up while the broker refuses them.
    loaded = secure_booth_config(tmp_path, acl_broker.port, queue_max=10, command_queue_max=64)
    ctl = FakeController()
    rids = [f"r{i}" for i in range(12)]
    async with secure_mes(acl_broker.port) as mes, running_link(loaded, ctl) as (link, _):
        for rid in rids[:6]:
            await mes.publish("reset", {"request_id": rid})
        for rid in rids[6:]:
            await mes.publish("get_status", {"request_id": rid})
        await wait_for(
            lambda: _logged(caplog, "the reply queue is full")
            and _logged(caplog, "publishing replies: the broker refuses")
            # Refused and tried again (with backoff) before the broker lets replies through.
            and link.refused_publishes >= 2,
            timeout_s=15, what="the reply queue to fill up with refused replies, retried",
        )
        assert mes.replies == []
        assert _logged(caplog, "publishing replies: the broker refuses") == 1

        reload_acl(acl_broker, secure_acl(*BOOTH_TOPICS))
        await mes.until(
            lambda: {r["request_id"] for r in mes.replies} >= set(rids), 10, "every reply"
        )
        marker = await mes.request("get_status")
    got = [r["request_id"] for r in mes.replies]
    assert got == [*rids, marker["request_id"]]  # each once, in order, none dropped
    assert ctl.count("reset") == 6
    assert all(r["ok"] for r in mes.replies)
    assert _logged(caplog, "dropped") == 0


async def test_a_connection_that_fails_at_once_backs_off(tmp_path: Path) -> None:
    # Two booths with the same client id take the connection from each other: every session
    # ends within the other's reconnect wait. The waits must keep growing (0.05-0.1 s,
    # 0.1-0.2, 0.2-0.4, then 0.3-0.6 s), not start from the shortest at each connection.
    assert STABLE_CONNECTION_S > 5.0
    with running_broker(tmp_path / "broker") as broker:
        backoff = {"reconnect_min_s": 0.1, "reconnect_max_s": 0.6}
        a = booth_config(tmp_path / "a", broker.port, **backoff)
        b = booth_config(tmp_path / "b", broker.port, **backoff)
        # b starts once a is connected (entered in turn).
        async with (
            running_link(a, FakeController()) as (la, _),
            running_link(b, FakeController(), wait_connected=False) as (lb, _),
        ):

            def total() -> int:
                return la.connections + lb.connections

            await wait_for(lambda: total() >= 4, timeout_s=20, what="4 connections")
            t0 = time.monotonic()
            await wait_for(
                lambda: total() >= 12, timeout_s=30, what="12 connections", interval_s=0.02
            )
            elapsed = time.monotonic() - t0
    # Each connection takes the other's, so the waits follow one another. After the first
    # four connections (one wait each) each link waits at least 0.1 + 0.2 + 0.3 + 0.3 s for its
    # next four: 1.8 s in all; with the backoff reset at every connection, 8 waits would take
    # at most 8 x 0.1 s.
    assert elapsed >= 1.6, f"8 connections within {elapsed:.2f} s: the backoff was reset"
