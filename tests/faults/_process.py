"""Process-level faults: the supervisor hung (SIGSTOP) or killed (SIGKILL) in the middle of a dip.

The whole booth runs as processes (broker, ``booth-sim``, ``boothctl run``) and is driven only
through its outside: MQTT commands as the MES sends them, and the simulator's control socket for
the truth. Nothing of the supervisor is asked whether it was safe: the simulator says.
"""

from __future__ import annotations

import asyncio
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt

from booth_ctl.config._booth import load_config
from booth_ctl.config._layers import has_comm_loss
from booth_ctl.links.mqtt import NoReply, mqtt_client, send_command
from devkit.booth import BoothStack
from tests._util import wait_for

#: The I/O module's watchdog (500 ms) must have the outputs safe within this of the hang.
WATCHDOG_SAFE_S = 1.0
#: After the drive's own comm-loss timeout, the part is out within this (CONTRACT s.4's "at once"
#: by the layer that is left).
DRIVE_PART_OUT_S = 1.0
RESTART_TIMEOUT_S = 30.0
#: With a heater controller that has no comm-loss timeout (the contactor alone covers it).
UNCOVERED_RESPONSE = (
    "I/O watchdog drops the outputs (heater contactor open, heater unpowered); the drive "
    "withdraws the part by itself; the controller runs on, deaf, until the restarted supervisor "
    "stops it; after restart `stopped`, outputs safe, the job recorded aborted"
)
UNCOVERED_GOAL = (
    "contactor open <= 1 s; part out <= the drive's comm_timeout_s + 1 s; controller stopped "
    "<= 1 s after the supervisor is back online"
)
#: ... and the restarted supervisor stops it within this of being back online.
STOPPED_AFTER_RESTART_S = 1.0


@dataclass
class ProcessOutcome:
    what: str
    response: str = (
        "I/O watchdog drops the outputs (heater contactor open); the drive withdraws the part "
        "by itself (its comm-loss timeout); after restart `stopped`, outputs safe, the job "
        "recorded aborted"
    )
    goal: str = "contactor open <= 1 s; part out <= the drive's comm_timeout_s + 1 s"
    measured: dict[str, float | None] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems

    def measured_text(self) -> str:
        return ", ".join(
            f"{k} {'-' if v is None else f'{v * 1000:.0f} ms'}" for k, v in self.measured.items()
        )


def stack_overrides(data: dict[str, Any]) -> None:
    """A small enclosure (quick purge after each start) and quick station moves."""
    data["booth"]["volume_l"] = 0.5
    data["sim"]["station_travel_s"] = 0.3


class Booth:
    """The MES's side of a running ``BoothStack``."""

    def __init__(self, stack: BoothStack, client: aiomqtt.Client) -> None:
        self.stack = stack
        self.client = client
        self._lots = 0
        loaded = load_config(stack.config)
        cfg = loaded.config
        timeout_s = cfg.devices[cfg.device_of_kind("holder_drive")].comm_timeout_s
        assert timeout_s is not None  # required by the booth config
        self.drive_comm_timeout_s = timeout_s
        #: A heater controller without a comm-loss timeout of its own (an Omron E5CC) keeps
        #: running while the supervisor is silent: only the contactor covers it, and the
        #: restarted supervisor must stop it (tests/faults/_cover.py).
        self.uncovered = any(
            not has_comm_loss(d, loaded.maps[n])
            for n, d in cfg.devices.items()
            if d.kind == "temp_controller"
        )

    async def command(self, name: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        return await send_command(self.client, self.stack.booth_id, name, args or {}, 5.0)

    async def status(self) -> dict[str, Any] | None:
        try:
            reply = await send_command(self.client, self.stack.booth_id, "get_status", {}, 1.0)
        except NoReply:
            return None  # not (yet) online
        result: dict[str, Any] = reply["result"]
        return result

    async def until(self, what: str, timeout_s: float, check: Any) -> Any:
        return await wait_for(check, timeout_s=timeout_s, what=what, interval_s=0.01)

    async def to_idle(self, timeout_s: float = 60.0) -> None:
        last: dict[str, Any] = {}

        async def advance() -> bool:
            """Idle and ready, or the next command towards it."""
            st = await self.status()
            last["status"] = st
            state = st["state"] if st else None
            if state == "idle" and st and st.get("ready"):
                return True
            if state == "aborted":
                await self.command("ack_alarm", {"alarm_id": "all"})
                await self.command("clear")
            elif state in ("stopped", "complete"):
                await self.command("reset")
            return False

        try:
            await wait_for(advance, timeout_s=timeout_s, what="booth idle", interval_s=0.2)
        except AssertionError:
            raise AssertionError(
                f"booth not idle within {timeout_s} s: {last.get('status')}"
            ) from None

    async def dip(self) -> str:
        """Start a job and return its lot once the part is in the solder (the truth says)."""
        self._lots += 1
        lot = f"PROC-{self._lots}"
        reply = await self.command("start_job", {"lot_id": lot, "recipe": "demo", "units": 3})
        assert reply["ok"], reply
        await self.until(
            "the part in the solder", 30.0, lambda: self.stack.sim_state()["part_in_bath"]
        )
        return lot


async def outputs_safe(
    booth: Booth, t0: float, out: ProcessOutcome, limit_s: float = WATCHDOG_SAFE_S
) -> None:
    """Poll the truth until the watchdog dropped the outputs; time it from the stop."""

    def safe() -> dict[str, Any] | None:
        truth = booth.stack.sim_state()
        ok = truth["io_watchdog_tripped"] and not truth["heater_contactor_closed"]
        return truth if ok else None

    truth = await booth.until("the I/O watchdog to make the outputs safe", 10.0, safe)
    took = time.monotonic() - t0
    out.measured["contactor_open"] = took
    if took > limit_s:
        out.problems.append(f"outputs safe only after {took:.2f} s")
    if not truth["n2_maintain_on"] or not truth["exhaust_ok"]:
        out.problems.append("the watchdog's safe state stopped N2 or the exhaust")
    # The drive's own comm-loss timeout is the third layer: it lifts the part out by itself.
    await booth.until(
        "the drive to withdraw the part by itself",
        10.0,
        lambda: not booth.stack.sim_state()["part_in_bath"],
    )
    took = time.monotonic() - t0
    out.measured["part_out"] = took
    drive = booth.drive_comm_timeout_s
    if took > drive + DRIVE_PART_OUT_S:
        out.problems.append(
            f"part out {took:.2f} s after the stop (drive comm_timeout_s {drive:g} s)"
        )
    if booth.uncovered:
        # No second path: the contactor alone must keep the heater without power.
        if any(v["heater_on"] for v in booth.stack.sim_state()["vessels"].values()):
            out.problems.append("a heater powered with the supervisor silent")
        out.notes.append("the controller has no comm-loss timeout: stopped after the restart")
        return
    # The heater controller's own comm-loss timeout is the second path.
    await booth.until(
        "the heater controller's own comm-loss stop",
        10.0,
        lambda: not any(v["running"] for v in booth.stack.sim_state()["vessels"].values()),
    )
    out.measured["controller_stopped"] = time.monotonic() - t0


async def after_restart(booth: Booth, lot: str, out: ProcessOutcome) -> None:
    t = time.monotonic()
    st = await booth.until("the supervisor back online", RESTART_TIMEOUT_S, booth.status)
    out.measured["restart"] = time.monotonic() - t
    if st["state"] != "stopped":
        out.problems.append(f"after restart the booth is {st['state']}, not stopped")
    truth = booth.stack.sim_state()
    if booth.uncovered:
        # Deaf while the supervisor was away, the controller may still run: the restarted
        # supervisor must stop it at once, the contactor staying open.
        await booth.until(
            "the restarted supervisor to stop the heater controller",
            10.0,
            lambda: not any(v["running"] for v in booth.stack.sim_state()["vessels"].values()),
        )
        stopped = time.monotonic() - t
        out.measured["stopped_after_restart"] = stopped
        online = out.measured["restart"] or 0.0
        if stopped - online > STOPPED_AFTER_RESTART_S:
            out.problems.append(
                f"controller stopped {stopped - online:.2f} s after the supervisor was back"
            )
        truth = booth.stack.sim_state()
    if truth["heater_contactor_closed"] or any(v["running"] for v in truth["vessels"].values()):
        out.problems.append("after restart the heater is on before any reset")
    await booth.until(
        "the restarted supervisor to lift the part out",
        10.0,
        lambda: not booth.stack.sim_state()["part_in_bath"],
    )
    reply = await booth.command("get_job", {"lot_id": lot})
    job = reply.get("result") or {}
    if job.get("outcome") != "aborted":
        out.problems.append(f"the cut-short job is recorded {job.get('outcome')!r}, not aborted")
    truth = booth.stack.sim_state()
    if truth["parts_dropped_in_bath"]:
        out.problems.append("a part fell into the solder")
    if truth["heater_contactor_closed"]:
        out.problems.append("the heater came back on without a reset")


async def hang_and_kill_async(
    workdir: Path, template: str = "booth-sim.toml"
) -> list[ProcessOutcome]:
    hang = ProcessOutcome("supervisor hang (SIGSTOP)")
    kill = ProcessOutcome("supervisor kill -9")
    with BoothStack(workdir, template=template, overrides=stack_overrides) as stack:
        mqtt = load_config(stack.config).config.mqtt
        async with mqtt_client(mqtt) as client:
            booth = Booth(stack, client)
            if booth.uncovered:
                for o in (hang, kill):
                    o.response = UNCOVERED_RESPONSE
                    o.goal = UNCOVERED_GOAL
            await booth.to_idle()
            lot = await booth.dip()
            t0 = time.monotonic()
            stack.supervisor.signal(signal.SIGSTOP)
            await outputs_safe(booth, t0, hang)
            # The hung process is then killed outright: a restart must find the booth safe.
            stack.supervisor.stop(kill=True)
            stack.start_supervisor()
            await after_restart(booth, lot, hang)

            await booth.to_idle()
            lot = await booth.dip()
            t0 = time.monotonic()
            stack.supervisor.signal(signal.SIGKILL)
            await outputs_safe(booth, t0, kill)
            stack.supervisor.stop()
            stack.start_supervisor()
            await after_restart(booth, lot, kill)
    return [hang, kill]


def hang_and_kill(workdir: Path, template: str = "booth-sim.toml") -> list[ProcessOutcome]:
    return asyncio.run(hang_and_kill_async(workdir, template))
