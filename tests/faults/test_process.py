"""The supervisor hung or killed in the middle of a dip, the whole booth as processes.

The I/O module's watchdog, not the supervisor, must make the outputs safe (CONTRACT s.4); after a
restart the booth is ``stopped`` with its outputs safe and the job cut short is recorded aborted.
Checked from the simulator's truth and over MQTT only, as the MES sees the booth.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from devkit.booth import BoothStack

from ._process import (
    WATCHDOG_SAFE_S,
    Booth,
    ProcessOutcome,
    after_restart,
    outputs_safe,
    stack_overrides,
)

pytestmark = [pytest.mark.process, pytest.mark.timeout(120)]

#: A loaded machine may add a little to the watchdog's 500 ms before the truth shows it.
GENEROUS_S = 3 * WATCHDOG_SAFE_S


async def test_hung_then_killed_supervisor_leaves_the_booth_safe(tmp_path: Path) -> None:
    from booth_ctl.config._booth import load_config
    from booth_ctl.links.mqtt import mqtt_client

    out = ProcessOutcome("supervisor hang (SIGSTOP), then kill -9")
    with BoothStack(tmp_path, overrides=stack_overrides) as stack:
        async with mqtt_client(load_config(stack.config).config.mqtt) as client:
            booth = Booth(stack, client)
            await booth.to_idle()
            lot = await booth.dip()
            t0 = time.monotonic()
            stack.supervisor.signal(signal.SIGSTOP)
            await outputs_safe(booth, t0, out, limit_s=GENEROUS_S)
            stack.supervisor.stop(kill=True)  # SIGKILL reaches a stopped process too
            stack.start_supervisor()
            await after_restart(booth, lot, out)
    assert out.passed, f"{out.problems} (measured: {out.measured_text()})"
