"""The MES link is back within a second of the broker, however long the broker was away."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from booth_ctl.links.mqtt import BROKER_DOWN_RETRY_S
from devkit.broker import running_broker
from tests._util import wait_for
from tests.booth_ctl._mes_helpers import FakeController, booth_config, running_link

pytestmark = pytest.mark.mqtt

#: Issue 13 item 15: back within this long of the broker taking connections again.
RECONNECT_GOAL_S = 1.0
#: Long enough that the backoff (doubling from reconnect_min_s) would wait seconds by now.
OUTAGE_S = 3.0


async def test_reconnects_within_a_second_of_a_broker_restarted_on_the_same_port(
    tmp_path: Path,
) -> None:
    with running_broker(tmp_path / "broker") as broker:
        # The shipped defaults: 0.1 s doubling up to 10 s.
        loaded = booth_config(tmp_path, broker.port, reconnect_min_s=0.1, reconnect_max_s=10.0)
        async with running_link(loaded, FakeController()) as (link, _):
            assert link.connections == 1
            await asyncio.to_thread(broker.stop)
            await wait_for(lambda: not link.connected.is_set(), timeout_s=5, what="link lost")
            await asyncio.sleep(OUTAGE_S)  # the outage itself, not a wait for a condition
            await asyncio.to_thread(broker.start)  # returns once it takes connections
            back_at = time.monotonic()
            await wait_for(
                lambda: link.connections == 2, timeout_s=10, what="reconnected and online"
            )
            took_s = time.monotonic() - back_at
            assert took_s <= RECONNECT_GOAL_S, f"back {took_s:.2f} s after the broker"
    assert BROKER_DOWN_RETRY_S < RECONNECT_GOAL_S
