"""A broker that stops answering (SIGSTOP) in the middle of a job changes nothing in the control.

The whole booth as processes. While the broker is frozen the supervisor's publishes and pings
wait (and its link gives the connection up); the job must go on, checked from the simulator's
truth, which needs no MQTT. Once the broker is back the booth is online again and the job ends
as it would have. (Delivery of every event across broker outages is the soak's and
``tests/booth_ctl/test_mes_delivery.py``'s.)
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from devkit.booth import BoothStack

from ._process import Booth, stack_overrides

pytestmark = [pytest.mark.process, pytest.mark.timeout(150)]

#: While the broker is frozen, the job must get at least this far (bath entries of the truth).
ENTRIES_WHILE_FROZEN = 2
FROZEN_MAX_S = 60.0


async def test_a_frozen_broker_does_not_stall_the_job(tmp_path: Path) -> None:
    from booth_ctl.config._booth import load_config
    from booth_ctl.links.mqtt import mqtt_client

    with BoothStack(tmp_path, overrides=stack_overrides) as stack:
        mqtt = load_config(stack.config).config.mqtt
        async with mqtt_client(mqtt) as client:
            booth = Booth(stack, client)
            await booth.to_idle()
            await booth.dip()
        entries0 = len(stack.sim_state()["bath_entries"])
        broker_pid = _broker_pid(stack)
        os.kill(broker_pid, signal.SIGSTOP)
        frozen_at = time.monotonic()
        try:
            await booth.until(
                f"{ENTRIES_WHILE_FROZEN} more bath entries with the broker frozen",
                FROZEN_MAX_S,
                lambda: len(stack.sim_state()["bath_entries"]) >= entries0 + ENTRIES_WHILE_FROZEN,
            )
        finally:
            os.kill(broker_pid, signal.SIGCONT)
        assert time.monotonic() - frozen_at < FROZEN_MAX_S
        truth = stack.sim_state()
        assert truth["parts_dropped"] == 0
        for e in truth["bath_entries"]:
            assert e["o2_ppm"] <= 1000.0 and 240.0 <= e["solder_temp_c"] <= 260.0

        async with mqtt_client(mqtt) as client:
            booth = Booth(stack, client)

            async def complete() -> bool:
                st = await booth.status()
                return bool(st and st["state"] == "complete")

            await booth.until("the booth online again and the job complete", 60.0, complete)
            reply = await booth.command("get_job", {"lot_id": "PROC-1"})
            job = reply["result"]
            assert job["outcome"] == "completed", job
            assert [u["outcome"] for u in job["unit_records"]] == ["completed"] * 3


def _broker_pid(stack: BoothStack) -> int:
    proc = stack.broker._proc  # the dev kit's own broker process
    assert proc is not None and proc.poll() is None
    return proc.pid
