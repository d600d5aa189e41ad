"""What the benchmarks share: the MES side of a booth over MQTT (a follower that survives broker
restarts, commands with their round trip), a job driver, process figures from /proc, the
supervisor's metrics endpoint, and a description of the machine."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import platform
import time
import urllib.request
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

# First: puts the repository on the import path for the packages below.
import _repo  # noqa: F401
import aiomqtt

from booth_ctl.links.mqtt import mes_side_client
from devkit.booth import BoothStack

#: Permissives that show the supervisor has heard from its devices since it started.
DEVICE_PERMISSIVES = ("io_ok", "holder_ok", "heaters_ok")
RECONNECT_S = 0.2
T = TypeVar("T")
#: The MES follower's own client log: a lost connection is expected here (broker restarts).
_MQTT_LOG = logging.getLogger("bench.mes")
_MQTT_LOG.setLevel(logging.CRITICAL)


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank); 0 for no values."""
    if not values:
        return 0.0
    s = sorted(values)
    return s[min(len(s) - 1, round(q / 100 * (len(s) - 1)))]


def machine() -> dict[str, str]:
    """The machine the figures come from: CPU model, cores, Python."""
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": str(os.cpu_count() or 0),
        "python": platform.python_version(),
        "system": platform.system(),
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def with_broker_and_sim(stack: BoothStack, measure: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Start ``stack``'s broker and simulator, run ``measure`` (which starts the supervisor when
    it wants to, as the figures are its), and stop the whole stack however it ends."""
    try:
        stack.broker.start()
        stack.start_sim()
        return asyncio.run(measure())
    finally:
        stack.stop()


def scrape_metrics(host: str, port: int, timeout_s: float = 2.0) -> dict[str, float]:
    """The supervisor's metrics endpoint (Prometheus text), unlabelled samples only."""
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=timeout_s) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#") or "{" in line:
            continue
        parts = line.split()
        if len(parts) == 2:
            with contextlib.suppress(ValueError):
                out[parts[0]] = float(parts[1])
    return out


@dataclass
class Watch:
    """The MES side of one booth: follows status, online, telemetry, events and replies.

    With ``persistent`` the session (and the events queued in it) outlives connections; the
    follower reconnects by itself whenever the broker goes away.
    """

    host: str
    port: int
    booth_id: str
    persistent: bool = False
    identifier: str = field(default_factory=lambda: f"mes-{uuid.uuid4().hex[:10]}")
    status: dict[str, Any] = field(default_factory=dict)
    online: bool = False
    #: (receive time, telemetry)
    telemetry: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    #: seq of every event, in arrival order (duplicates included)
    seqs: list[int] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    connections: int = 0
    keep_telemetry: bool = True

    def __post_init__(self) -> None:
        self.root = f"booth/{self.booth_id}/"
        self._client: aiomqtt.Client | None = None
        self._replies: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()

    async def __aenter__(self) -> Watch:
        self._task = asyncio.create_task(self._run(), name=f"watch-{self.booth_id}")
        await self.wait(self._connected.is_set, 20.0, "MES connection")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def _make(self) -> aiomqtt.Client:
        return mes_side_client(
            self.host,
            self.port,
            identifier=self.identifier,
            session_expiry_s=3600 if self.persistent else None,
            max_queued_incoming_messages=0,
            logger=_MQTT_LOG,
        )

    async def _run(self) -> None:
        while True:
            client = self._make()
            try:
                async with client:
                    for t in ("status", "online", "telemetry", "events", "reply"):
                        await client.subscribe(self.root + t, qos=0 if t == "telemetry" else 1)
                    self._client = client
                    self.connections += 1
                    self._connected.set()
                    async for m in client.messages:
                        self._take(m)
            except aiomqtt.MqttError:
                pass
            finally:
                self._client = None
                self._connected.clear()
                misc = getattr(client, "_misc_task", None)
                if isinstance(misc, asyncio.Task) and not misc.done():
                    misc.cancel()
                    await asyncio.gather(misc, return_exceptions=True)
            await asyncio.sleep(RECONNECT_S)

    def _take(self, m: aiomqtt.Message) -> None:
        topic = m.topic.value[len(self.root) :]
        payload = m.payload if isinstance(m.payload, bytes) else b""
        try:
            body = json.loads(payload)
        except ValueError:
            return
        if topic == "status":
            self.status = body
        elif topic == "online":
            self.online = bool(body)
        elif topic == "telemetry":
            if self.keep_telemetry:
                self.telemetry.append((time.monotonic(), body))
        elif topic == "events":
            self.seqs.append(int(body["seq"]))
            self.events.append(body)
        elif topic == "reply":
            fut = self._replies.pop(str(body.get("request_id")), None)
            if fut is not None and not fut.done():
                fut.set_result(body)
        self._changed.set()

    async def wait(self, check: Callable[[], object], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not check():
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"waited {timeout_s:.0f} s for {what}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(left, 0.2)):
                    await self._changed.wait()

    def devices_up(self) -> bool:
        il = self.status.get("interlocks") or {}
        return self.online and bool(il) and all(il.get(k) for k in DEVICE_PERMISSIVES)

    async def command(
        self, command: str, args: dict[str, Any] | None = None, timeout_s: float = 10.0
    ) -> tuple[dict[str, Any] | None, float]:
        """Publish a command; its reply (None if none came in time) and round trip in ms."""
        client = self._client
        if client is None:
            return None, 0.0
        rid = uuid.uuid4().hex
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[rid] = fut
        t0 = time.perf_counter()
        try:
            await client.publish(
                self.root + f"cmd/{command}",
                json.dumps({"request_id": rid, **(args or {})}),
                qos=1,
            )
            async with asyncio.timeout(timeout_s):
                reply = await fut
        except (TimeoutError, aiomqtt.MqttError):
            self._replies.pop(rid, None)
            return None, 0.0
        return reply, (time.perf_counter() - t0) * 1000.0


@dataclass
class JobCounts:
    started: int = 0
    completed: int = 0
    aborted: int = 0
    refused: int = 0
    unanswered: int = 0


async def run_jobs(
    watch: Watch, until: Callable[[], bool], *, units: int = 3, recipe: str = "demo"
) -> JobCounts:
    """Jobs back to back until ``until()``: resets, clears and starts as the state asks."""
    counts = JobCounts()
    seen_end: set[str] = set()
    n = 0
    while not until():
        for e in watch.events[-50:]:
            lot = str(e.get("lot_id"))
            if e.get("type") in ("job_completed", "job_aborted") and lot not in seen_end:
                seen_end.add(lot)
                if e["type"] == "job_completed":
                    counts.completed += 1
                else:
                    counts.aborted += 1
        state = watch.status.get("state")
        reply: dict[str, Any] | None = None
        acted = True
        if not watch.devices_up():
            acted = False
        elif state == "idle":
            n += 1
            reply, _ = await watch.command(
                "start_job",
                {"lot_id": f"BENCH-{os.getpid()}-{n}", "recipe": recipe, "units": units},
            )
            if reply is not None and reply.get("ok"):
                counts.started += 1
        elif state in ("stopped", "complete"):
            reply, _ = await watch.command("reset")
        elif state == "aborted":
            reply, _ = await watch.command("clear")
        elif state == "held":
            reply, _ = await watch.command("unhold")
        else:
            acted = False
        if acted and reply is None:
            counts.unanswered += 1
        elif acted and reply is not None and not reply.get("ok"):
            counts.refused += 1
        before = watch.status.get("state")

        def moved(before: Any = before) -> bool:
            return watch.status.get("state") != before or until()

        with contextlib.suppress(TimeoutError):
            await watch.wait(moved, 2.0, "a state change")
    return counts
