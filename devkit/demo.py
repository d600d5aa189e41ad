"""``make demo``: the sample job on the simulated booth, run as the MES would, over MQTT.

Starts a private broker on a free loopback port, ``booth-sim`` and ``boothctl run``; sends
``reset``, waits for ``idle``, sends ``start_job`` (recipe ``demo``, 3 units), shows progress,
prints a summary, stops everything it started (also on Ctrl-C or a failure) and exits 0 only if
the job completed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiomqtt

from booth_ctl.control._sequencer import Step
from booth_ctl.links.mqtt import mqtt_client, send_command

from .booth import BoothStack

ONLINE_TIMEOUT_S = 30.0
IDLE_TIMEOUT_S = 60.0
JOB_TIMEOUT_S = 180.0
BAR_WIDTH = 30
#: Erase to the end of the line (the bar is redrawn in place on a terminal).
CLEAR_LINE = "\x1b[K"
STEPS = [s.value for s in Step]
#: Permissives that show the supervisor has heard from its devices since it started.
DEVICE_PERMISSIVES = ("io_ok", "holder_ok", "heaters_ok")


class Watch:
    """Follows status, telemetry and events of the booth and prints progress lines."""

    def __init__(self, root: str, units: int, *, live: bool | None = None) -> None:
        self.root = root
        self.units = units
        #: On a terminal: one progress bar redrawn in place; otherwise (a log, a pipe): lines.
        self.live = sys.stdout.isatty() if live is None else live
        self.units_ended = 0
        self._bar_shown = False
        self._bar_done = False
        #: The fraction drawn last (the bar never goes back).
        self._frac = 0.0
        self.status: dict[str, Any] = {}
        self.telemetry: dict[str, Any] = {}
        self.online = False
        self.events: list[dict[str, Any]] = []
        self.changed = asyncio.Event()
        self._last_line = ""

    async def follow(self, client: aiomqtt.Client) -> None:
        for topic in ("status", "online", "telemetry", "events"):
            await client.subscribe(self.root + topic, qos=1)
        async for message in client.messages:
            body = json.loads(bytes(message.payload))
            topic = str(message.topic)[len(self.root) :]
            if topic == "status":
                self.status = body
            elif topic == "online":
                self.online = bool(body)
            elif topic == "telemetry":
                self.telemetry = body
            elif topic == "events":
                self.events.append(body)
                self._print_event(body)
            self._print_progress()
            self.changed.set()

    def _say(self, text: str) -> None:
        """A line above the progress bar (the bar is drawn again after it)."""
        if self._bar_shown:
            sys.stdout.write("\r" + CLEAR_LINE)
            self._bar_shown = False
        print(text, flush=True)

    def end_bar(self) -> None:
        """The job ended: leave the bar as it is and draw it no more."""
        self._bar_done = True
        if self._bar_shown:
            sys.stdout.write("\n")
            sys.stdout.flush()
            self._bar_shown = False

    def _print_event(self, ev: dict[str, Any]) -> None:
        kind = ev.get("type")
        if kind in ("unit_completed", "unit_rejected"):
            self.units_ended += 1
        if kind == "dip":
            self._say(
                f"  dip  unit {ev.get('unit')}: {ev.get('vessel')} at "
                f"O2 {_num(ev.get('o2_ppm'))} ppm, solder {_num(ev.get('solder_temp_c'))} C, "
                f"depth {ev.get('depth_mm')} mm, dwell {ev.get('dwell_s')} s"
            )
        elif kind in ("unit_completed", "unit_rejected", "job_started", "job_completed"):
            extra = f" ({ev.get('reason')})" if kind == "unit_rejected" else ""
            self._say(f"  {kind.replace('_', ' ')}{extra}")
        elif kind == "alarm_set":
            self._say(f"  ALARM {ev.get('code')}: {ev.get('text')}")

    def _print_progress(self) -> None:
        st = self.status
        job = st.get("job") or {}
        t = self.telemetry
        if self.live:
            if self._bar_done or (not job and not self._bar_shown and not self.units_ended):
                return  # no job yet: nothing to draw
            self._frac = max(self._frac, job_fraction(job, self.units, self.units_ended))
            line = progress_bar(st, t, self.units, self.units_ended, self._frac)
            if line != self._last_line or not self._bar_shown:
                self._last_line = line
                sys.stdout.write("\r" + line + CLEAR_LINE)
                sys.stdout.flush()
                self._bar_shown = True
            return
        unit = f"unit {job.get('unit')} of {self.units}" if job else "no job"
        line = (
            f"[{st.get('state', '?'):>11}] {unit:<14} step {job.get('step', '-'):<12} "
            f"solder {_num(t.get('solder_temp_c'))} C  O2 {_num(t.get('o2_ppm'))} ppm"
        )
        if line != self._last_line:
            self._last_line = line
            print(line, flush=True)

    async def until(self, what: str, timeout_s: float, check: Any) -> None:
        deadline = time.monotonic() + timeout_s
        while not check():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"waited {timeout_s:.0f} s for {what}; state {self.status.get('state')!r}"
                )
            self.changed.clear()
            try:
                async with asyncio.timeout(min(remaining, 1.0)):
                    await self.changed.wait()
            except TimeoutError:
                continue


def job_fraction(job: dict[str, Any] | None, units: int, units_ended: int) -> float:
    """How far the job is, 0..1: units ended, plus the current unit's step among the steps."""
    if units <= 0:
        return 0.0
    done = min(units, units_ended)
    if job and done < units:
        step = str(job.get("step") or "")
        if step in STEPS:
            done_f = done + STEPS.index(step) / (len(STEPS) - 1)
            return min(1.0, done_f / units)
    return done / units


def progress_bar(
    status: dict[str, Any],
    telemetry: dict[str, Any],
    units: int,
    units_ended: int,
    floor: float = 0.0,
) -> str:
    """One line: the bar, the percentage, unit n of N, the step, the state and two readings.

    ``floor``: the fraction drawn last; the bar never goes back (between a unit's last step and
    its ``unit_completed`` event the status already names the next unit's first step).
    """
    job = status.get("job") or {}
    frac = max(floor, job_fraction(job, units, units_ended))
    filled = round(frac * BAR_WIDTH)
    unit = job.get("unit") if job else min(units, units_ended)
    return (
        f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {frac * 100:3.0f}%  unit {unit} of "
        f"{units}  step {job.get('step', '-') if job else '-':<13} {status.get('state', '?'):<9} "
        f"solder {_num(telemetry.get('solder_temp_c'))} C  O2 {_num(telemetry.get('o2_ppm'))} ppm"
    )


def _num(value: Any) -> str:
    """A reading to one decimal, or '-' when there is none."""
    return f"{value:.1f}" if isinstance(value, int | float) else "-"


def _summary(job: dict[str, Any], elapsed_s: float) -> str:
    lines = [
        "",
        f"lot {job['lot_id']}  recipe {job['recipe']}  outcome {job['outcome']}  "
        f"time {elapsed_s:.1f} s",
        f"{'unit':>4}  {'outcome':<10} {'vessel':<8} {'O2 ppm':>8} {'solder C':>9} "
        f"{'depth mm':>9} {'dwell s':>8}",
    ]
    done = 0
    for unit in job.get("unit_records", []):
        if unit["outcome"] == "completed":
            done += 1
        dips = unit.get("dips") or [{}]
        for d in dips:
            lines.append(
                f"{unit['unit']:>4}  {unit['outcome']:<10} {d.get('vessel', '-'):<8} "
                f"{_num(d.get('o2_ppm')):>8} {_num(d.get('solder_temp_c')):>9} "
                f"{d.get('depth_mm', '-'):>9} {d.get('dwell_s', '-'):>8}"
            )
    lines.append(f"units done: {done} of {job['units']}")
    return "\n".join(lines)


async def drive(stack: BoothStack, units: int, recipe: str) -> bool:
    root = f"booth/{stack.booth_id}/"
    from booth_ctl.config._booth import load_config

    mqtt = load_config(stack.config).config.mqtt
    watch = Watch(root, units)
    async with mqtt_client(mqtt) as listener, mqtt_client(mqtt) as commander:
        follower = asyncio.create_task(watch.follow(listener), name="demo-follow")
        try:

            def devices_answer() -> bool:
                il = watch.status.get("interlocks") or {}
                return watch.online and bool(il) and all(il.get(k) for k in DEVICE_PERMISSIVES)

            await watch.until("the supervisor and its devices", ONLINE_TIMEOUT_S, devices_answer)
            print("supervisor online; reset")
            reply = await send_command(commander, stack.booth_id, "reset", {}, 10.0)
            if not reply["ok"]:
                print(f"reset refused: {reply['error']}")
                return False
            await watch.until("idle", IDLE_TIMEOUT_S, lambda: watch.status.get("state") == "idle")
            lot_id = f"DEMO-{time.strftime('%Y%m%d-%H%M%S')}"
            print(f"idle; start_job {lot_id}: recipe {recipe}, {units} units")
            started = time.monotonic()
            reply = await send_command(
                commander,
                stack.booth_id,
                "start_job",
                {"lot_id": lot_id, "recipe": recipe, "units": units},
                10.0,
            )
            if not reply["ok"]:
                print(f"start_job refused: {reply['error']}")
                return False

            def ended() -> bool:
                return any(
                    e.get("type") in ("job_completed", "job_aborted") and e.get("lot_id") == lot_id
                    for e in watch.events
                )

            await watch.until("the job to end", JOB_TIMEOUT_S, ended)
            elapsed = time.monotonic() - started
            watch.end_bar()
            reply = await send_command(commander, stack.booth_id, "get_job", {"lot_id": lot_id}, 10)
            job = reply["result"]
            print(_summary(job, elapsed))
            truth = stack.sim_state()
            print(
                f"simulator's record: {len(truth['bath_entries'])} bath entries, "
                f"{truth['parts_loaded']} parts loaded, {truth['parts_unloaded']} unloaded, "
                f"{truth['parts_dropped']} dropped"
            )
            return bool(job["outcome"] == "completed")
        finally:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="demo", description=__doc__.splitlines()[0])
    p.add_argument("--units", type=int, default=3)
    p.add_argument("--recipe", default="demo")
    p.add_argument("--keep", action="store_true", help="keep the work folder (logs, records)")
    args = p.parse_args(argv)
    # A terminal closed or a `kill` stops the demo as Ctrl-C does: through the clean-up below.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    workdir = Path(tempfile.mkdtemp(prefix="booth-demo-"))
    print(f"starting broker, booth-sim and boothctl run (logs in {workdir})")
    ok = False
    try:
        with BoothStack(workdir) as stack:
            print(f"broker on {stack.mqtt_host}:{stack.mqtt_port}, booth {stack.booth_id}")
            ok = asyncio.run(drive(stack, args.units, args.recipe))
            if not ok:
                print(stack.supervisor.log_tail(), file=sys.stderr)
    except KeyboardInterrupt:
        print("interrupted: everything started was stopped", file=sys.stderr)
    except (TimeoutError, RuntimeError, aiomqtt.MqttError) as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
    print("stopped broker, booth-sim and supervisor")
    if ok and not args.keep:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


if __name__ == "__main__":
    raise SystemExit(main())

