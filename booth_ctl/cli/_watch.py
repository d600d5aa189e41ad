"""``boothctl watch``: the operator's live view of the booth, in a terminal at the booth PC.

It is an MQTT client like the MES (it reads ``status``, ``online``, ``telemetry`` and ``events``
and never commands anything), so it shows what the MES sees and works from any PC that may
reach the broker. The frame is redrawn when something arrives (at most ``MAX_FPS`` times a
second) and once a second regardless, so that a silent booth visibly ages.
"""

from __future__ import annotations

import asyncio
import collections
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO

import aiomqtt

from booth_ctl.config._booth import MqttConfig
from booth_ctl.links.mqtt import mqtt_client, topic_root

#: Points of a trend line (one per telemetry message: a minute at the default 1 Hz).
TREND_POINTS = 60
#: Characters of a trend line shown (the newest ones).
TREND_WIDTH = 30
SPARKS = "▁▂▃▄▅▆▇█"
#: Redraws per second at most, however fast messages come.
MAX_FPS = 10
#: Telemetry older than this is shown as stale (it comes at 1 Hz by default).
TELEMETRY_STALE_S = 5.0
#: Event lines kept on screen.
EVENT_LINES = 6
#: After a lost broker, try again this often.
RECONNECT_S = 2.0

#: (telemetry key, label, format) of the reading rows.
READINGS: tuple[tuple[str, str, str], ...] = (
    ("solder_temp_c", "solder temperature  C", "{:8.1f}"),
    ("solder_setpoint_c", "setpoint            C", "{:8.1f}"),
    ("heater_output_pct", "heater output       %", "{:8.1f}"),
    ("o2_ppm", "O2                ppm", "{:8.1f}"),
    ("n2_flow_lpm", "N2 flow         l/min", "{:8.1f}"),
    ("vacuum_kpa", "vacuum            kPa", "{:8.1f}"),
    ("holder_z_mm", "holder z           mm", "{:8.1f}"),
    ("flux_level_pct", "flux level          %", "{:8.1f}"),
)
#: Event types shown in the recent-events list (dips and steps would scroll the rest away).
SHOWN_EVENTS = frozenset(
    {
        "state_changed",
        "host_message",
        "alarm_set",
        "alarm_cleared",
        "job_started",
        "unit_completed",
        "unit_rejected",
        "job_completed",
        "job_aborted",
        "dip",
    }
)

GREEN, RED, YELLOW, BOLD, DIM, RESET = (
    "\x1b[32m",
    "\x1b[31m",
    "\x1b[33m",
    "\x1b[1m",
    "\x1b[2m",
    "\x1b[0m",
)
CLEAR = "\x1b[H\x1b[2J"
ALT_SCREEN_ON, ALT_SCREEN_OFF = "\x1b[?1049h\x1b[?25l", "\x1b[?25h\x1b[?1049l"


@dataclass
class BoothView:
    """What the watcher knows of the booth, built from the messages it received."""

    booth_id: str
    status: dict[str, Any] | None = None
    online: bool | None = None
    telemetry: dict[str, Any] | None = None
    telemetry_at: float | None = None
    trends: dict[str, collections.deque[float]] = field(default_factory=dict)
    events: collections.deque[dict[str, Any]] = field(
        default_factory=lambda: collections.deque(maxlen=EVENT_LINES)
    )
    #: Why the view may be out of date (broker lost), shown at the top.
    problem: str = ""

    def apply(self, subtopic: str, body: Any, now: float) -> bool:
        """Take one message (topic below the booth's root); True if the view changed."""
        if subtopic == "status" and isinstance(body, dict):
            self.status = body
        elif subtopic == "online":
            self.online = bool(body)
        elif subtopic == "telemetry" and isinstance(body, dict):
            self.telemetry = body
            self.telemetry_at = now
            for key, _, _ in READINGS:
                value = body.get(key)
                if isinstance(value, int | float) and not isinstance(value, bool):
                    self.trends.setdefault(key, collections.deque(maxlen=TREND_POINTS)).append(
                        float(value)
                    )
        elif subtopic == "events" and isinstance(body, dict):
            if body.get("type") not in SHOWN_EVENTS:
                return False
            self.events.append(body)
        else:
            return False
        return True


def sparkline(values: list[float], width: int = TREND_WIDTH) -> str:
    """The newest ``width`` values as bars scaled between their own min and max."""
    values = values[-width:]
    if not values:
        return ""
    lo, hi = min(values), max(values)
    if hi - lo < 1e-9:
        return SPARKS[0] * len(values)
    top = len(SPARKS) - 1
    return "".join(SPARKS[round((v - lo) / (hi - lo) * top)] for v in values)


def render(view: BoothView, now: float, *, color: bool, wall: float | None = None) -> str:
    """One frame of the view, as text (ANSI colours if ``color``)."""

    def c(code: str, text: str) -> str:
        return f"{code}{text}{RESET}" if color else text

    wall = time.time() if wall is None else wall
    st = view.status or {}
    lines: list[str] = []
    online = (
        c(GREEN, "ONLINE")
        if view.online
        else c(RED, "OFFLINE")
        if view.online is False
        else c(YELLOW, "online?")
    )
    clock = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(wall))
    lines.append(
        f"{c(BOLD, 'booth ' + view.booth_id)}   {online}   mode {st.get('mode') or '-'}   {clock}"
    )
    if view.problem:
        lines.append(c(RED, f"!! {view.problem}"))
    if view.status is None:
        lines.append("waiting for the booth's status ...")
        return "\n".join(lines) + "\n"
    state = str(st.get("state", "?"))
    state_color = RED if state in ("aborted", "aborting", "stopped", "held") else GREEN
    ready = c(GREEN, "ready") if st.get("ready") else c(YELLOW, "not ready")
    lines.append(f"state  {c(BOLD + state_color, state.upper())}   {ready}")
    job = st.get("job")
    if isinstance(job, dict):
        lines.append(
            f"job    lot {job.get('lot_id')}  recipe {job.get('recipe', '-')}  "
            f"unit {job.get('unit', '-')} of {job.get('units', '-')}  step {job.get('step', '-')}"
        )
    else:
        lines.append("job    none")

    lines.append("")
    lines.append(c(BOLD, "permissives"))
    perms: Mapping[str, Any] = st.get("interlocks") or {}
    cells = [
        (c(GREEN, "● ") if ok else c(RED, "○ ")) + (name if ok else c(RED, name))
        for name, ok in sorted(perms.items())
    ]
    widths = [len(name) + 2 for name in sorted(perms)]
    col = max(widths, default=0) + 2
    per_row = 4
    for i in range(0, len(cells), per_row):
        row = ""
        for cell, w in zip(cells[i : i + per_row], widths[i : i + per_row], strict=True):
            row += cell + " " * (col - w)
        lines.append("  " + row.rstrip())

    alarms: list[dict[str, Any]] = list(st.get("alarms") or [])
    lines.append("")
    lines.append(c(BOLD, f"alarms ({len(alarms)})"))
    for a in alarms:
        acked = "acked" if a.get("acked") else c(YELLOW, "NOT ACKED")
        sev = str(a.get("severity"))
        sev_txt = c(RED, sev) if sev in ("trip", "alarm", "critical") else c(YELLOW, sev)
        lines.append(f"  [{sev_txt}] {a.get('id')} {a.get('code')}: {a.get('text')}  ({acked})")

    lines.append("")
    age = None if view.telemetry_at is None else now - view.telemetry_at
    stale = age is None or age > TELEMETRY_STALE_S
    head = "readings" + (
        c(RED, "  (no telemetry yet)")
        if age is None
        else c(RED, f"  (stale: {age:.0f} s old)")
        if stale
        else ""
    )
    lines.append(c(BOLD, head))
    tel = view.telemetry or {}
    for key, label, fmt in READINGS:
        value = tel.get(key)
        shown = (
            fmt.format(value)
            if isinstance(value, int | float) and not isinstance(value, bool)
            else f"{'-':>8}"
        )
        trend = sparkline(list(view.trends.get(key, ())))
        lines.append(f"  {label} {shown}  {c(DIM, trend)}")
    for key, label in (("door_closed", "door closed"), ("estop_ok", "e-stop clear")):
        value = tel.get(key)
        word = "yes" if value is True else "no" if value is False else "-"
        # Padded before colouring: escape codes have no width on screen.
        padded = f"{word:>8}"
        txt = c(GREEN, padded) if value is True else c(RED, padded) if value is False else padded
        lines.append(f"  {label:<20} {txt}")
    scan = tel.get("scan")
    if isinstance(scan, dict):
        lines.append(
            f"  scan {scan.get('period_ms')} ms: late p99 {scan.get('late_p99_ms')} ms, "
            f"max {scan.get('late_max_ms')} ms, overruns {scan.get('overruns')} (last minute)"
        )

    if view.events:
        lines.append("")
        lines.append(c(BOLD, "recent events"))
        for ev in view.events:
            ts = ev.get("ts")
            when = (
                time.strftime("%H:%M:%S", time.localtime(ts)) if isinstance(ts, int | float) else ""
            )
            extra = {k: v for k, v in ev.items() if k not in ("seq", "type", "ts")}
            detail = " ".join(f"{k}={v}" for k, v in extra.items())
            lines.append(f"  {when} {ev.get('type')} {detail}"[:160])
    return "\n".join(lines) + "\n"


class Watcher:
    """Follows one booth over MQTT and keeps a :class:`BoothView` up to date."""

    def __init__(self, mqtt: MqttConfig, booth_id: str, **client_opts: Any) -> None:
        self.mqtt = mqtt
        self.view = BoothView(booth_id)
        self.root = topic_root(booth_id)
        self.changed = asyncio.Event()
        self._client_opts = client_opts

    async def follow(self) -> None:
        """Receive messages until cancelled; raises aiomqtt.MqttError if the broker is lost."""
        async with mqtt_client(self.mqtt, **self._client_opts) as client:
            for topic in ("status", "online", "telemetry", "events"):
                await client.subscribe(self.root + topic, qos=1)
            self.view.problem = ""
            self.changed.set()
            async for message in client.messages:
                sub = message.topic.value[len(self.root) :]
                raw = message.payload if isinstance(message.payload, bytes) else b""
                try:
                    body = json.loads(raw)
                except ValueError:
                    continue  # not ours to judge; the MES link never publishes non-JSON
                if self.view.apply(sub, body, time.monotonic()):
                    self.changed.set()


async def watch_once(watcher: Watcher, timeout_s: float, out: TextIO, *, color: bool) -> bool:
    """Print one frame once status (and telemetry, if it comes in time) arrived."""
    follower = asyncio.create_task(watcher.follow(), name="watch-follow")
    try:
        deadline = time.monotonic() + timeout_s
        view = watcher.view
        while view.status is None or view.telemetry is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or follower.done():
                break
            watcher.changed.clear()
            try:
                async with asyncio.timeout(remaining):
                    await _first(watcher.changed.wait(), follower)
            except TimeoutError:
                break
        if follower.done() and not follower.cancelled():
            follower.result()  # a lost broker surfaces as its MqttError
        if view.status is None:
            return False
        out.write(render(view, time.monotonic(), color=color))
        out.flush()
        return True
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)


async def _first(wait: Any, follower: asyncio.Task[None]) -> None:
    waiter = asyncio.ensure_future(wait)
    try:
        await asyncio.wait({waiter, follower}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)


async def watch_live(
    watcher: Watcher,
    out: TextIO,
    *,
    color: bool,
    describe_error: Callable[[BaseException], str] = str,
) -> None:
    """Redraw on every change (rate-limited) and every second, until cancelled (Ctrl-C)."""

    async def follow_forever() -> None:
        while True:
            try:
                await watcher.follow()
            except aiomqtt.MqttError as exc:
                watcher.view.problem = f"{describe_error(exc)}; retrying"
                watcher.changed.set()
            await asyncio.sleep(RECONNECT_S)

    follower = asyncio.create_task(follow_forever(), name="watch-follow")
    out.write(ALT_SCREEN_ON)
    try:
        while True:
            out.write(CLEAR + render(watcher.view, time.monotonic(), color=color))
            out.flush()
            watcher.changed.clear()
            try:
                async with asyncio.timeout(1.0):
                    await watcher.changed.wait()
            except TimeoutError:
                pass
            await asyncio.sleep(1.0 / MAX_FPS)
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
        out.write(ALT_SCREEN_OFF)
        out.flush()
