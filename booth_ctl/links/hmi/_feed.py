"""What the pages show live: the latest status, the mode, the readings of the last minutes and the
recent events, pushed to every open page as server-sent events.

The scan only calls :meth:`Feed.status_changed` and :meth:`Feed.telemetry` (never blocking: they
keep the newest value and wake the feed's task); the feed's task encodes each message once and
puts it on every page's bounded queue. A page whose queue is full (a stalled browser) is dropped;
its browser reconnects and starts again from a snapshot.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from booth_ctl.records._mode_watch import follow_mode
from booth_ctl.records._recorder import Records

log = logging.getLogger("booth_ctl.hmi")

#: Readings kept for the trend charts (telemetry keys).
TREND_KEYS = (
    "solder_temp_c",
    "solder_setpoint_c",
    "heater_output_pct",
    "o2_ppm",
    "n2_flow_lpm",
    "holder_z_mm",
    "vacuum_kpa",
)
RECENT_EVENTS = 50
PAGE_QUEUE_MAX = 256
MODE_POLL_S = 1.0
EVENTS_READ_MAX = 200


@dataclass(eq=False)
class Page:
    """One open page's stream."""

    #: Called on a mode change: the page's own extra message (its allowed commands).
    on_mode: Callable[[], bytes] | None = None
    queue: asyncio.Queue[bytes | None] = field(
        default_factory=lambda: asyncio.Queue(PAGE_QUEUE_MAX)
    )


def sse(kind: str, data: Any) -> bytes:
    text = json.dumps(data, separators=(",", ":"), default=str)
    return f"event: {kind}\ndata: {text}\n\n".encode()


class Feed:
    """The HMI's status sink and event follower; ``async with`` runs its tasks."""

    def __init__(self, records: Records, *, trend_s: float, telemetry_period_s: float) -> None:
        self._records = records
        self.status: dict[str, Any] | None = None
        self.mode = "remote"
        self.trend: collections.deque[dict[str, Any]] = collections.deque(
            maxlen=max(10, int(trend_s / telemetry_period_s) + 1)
        )
        self.latest: dict[str, Any] | None = None
        self.events: collections.deque[dict[str, Any]] = collections.deque(maxlen=RECENT_EVENTS)
        self._cursor = 0
        self._pages: set[Page] = set()
        self._status_dirty = asyncio.Event()
        self._telemetry_dirty = asyncio.Event()
        self._events_dirty = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        #: Called when the mode read from the store changes (the authority's cache).
        self.on_mode_change: Callable[[str], None] | None = None

    async def __aenter__(self) -> Feed:
        store = self._records.store
        self.mode = await self._records.call(store.get_mode)
        last = await self._records.call(store.last_seq)
        self._cursor = max(0, last - RECENT_EVENTS)
        self._records.on_committed(self.events_available)
        self._events_dirty.set()
        self._tasks = [
            asyncio.create_task(self._push_status(), name="hmi-status"),
            asyncio.create_task(self._push_telemetry(), name="hmi-telemetry"),
            asyncio.create_task(self._push_events(), name="hmi-events"),
            asyncio.create_task(self._watch_mode(), name="hmi-mode"),
        ]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.end_streams()

    def end_streams(self) -> None:
        for page in list(self._pages):
            self.leave(page)

    # ------------------------------------------------------------------ the scan's side

    def status_changed(self, status: dict[str, Any]) -> None:
        self.status = status
        self._status_dirty.set()

    def telemetry(self, data: dict[str, Any]) -> None:
        self.latest = data
        self._telemetry_dirty.set()

    def events_available(self) -> None:
        self._events_dirty.set()

    @property
    def ready(self) -> bool:
        return self.status is not None

    # ------------------------------------------------------------------ pages

    def snapshot(self) -> dict[str, Any]:
        return {
            "status": self._status_view(),
            "telemetry": self.latest,
            "trend": list(self.trend),
            "events": list(self.events),
        }

    def join(self, page: Page) -> None:
        self._pages.add(page)

    def leave(self, page: Page) -> None:
        if page in self._pages:
            self._pages.discard(page)
            with contextlib.suppress(asyncio.QueueFull):
                page.queue.put_nowait(None)  # ends its stream

    @property
    def pages(self) -> int:
        return len(self._pages)

    def _broadcast(self, message: bytes) -> None:
        for page in list(self._pages):
            try:
                page.queue.put_nowait(message)
            except asyncio.QueueFull:
                log.warning("HMI: a page fell %d messages behind; dropped", PAGE_QUEUE_MAX)
                self._pages.discard(page)
                # Its stream ends when the queue drains; the browser reconnects.
                with contextlib.suppress(asyncio.QueueEmpty):
                    page.queue.get_nowait()
                page.queue.put_nowait(None)

    def _status_view(self) -> dict[str, Any] | None:
        if self.status is None:
            return None
        return {**self.status, "mode": self.mode}

    # ------------------------------------------------------------------ tasks

    async def _push_status(self) -> None:
        while True:
            await self._status_dirty.wait()
            self._status_dirty.clear()
            self._broadcast(sse("status", self._status_view()))

    async def _push_telemetry(self) -> None:
        while True:
            await self._telemetry_dirty.wait()
            self._telemetry_dirty.clear()
            data = self.latest
            if data is None:
                continue
            point = {"ts": round(time.time(), 2), **{k: data.get(k) for k in TREND_KEYS}}
            self.trend.append(point)
            self._broadcast(sse("telemetry", {"telemetry": data, "point": point}))

    async def _push_events(self) -> None:
        store = self._records.store
        while True:
            await self._events_dirty.wait()
            self._events_dirty.clear()
            try:
                got = await self._records.call(
                    store.events, after_seq=self._cursor, limit=EVENTS_READ_MAX
                )
            except Exception as exc:
                log.warning("HMI: cannot read events: %s", exc)
                await asyncio.sleep(1.0)
                self._events_dirty.set()
                continue
            if not got:
                continue
            self._cursor = int(got[-1]["seq"])
            self.events.extend(got)
            self._broadcast(sse("events", got))
            if len(got) == EVENTS_READ_MAX:
                self._events_dirty.set()

    async def _watch_mode(self) -> None:
        await follow_mode(self._records, "HMI", self.set_mode, MODE_POLL_S)

    def set_mode(self, mode: str) -> None:
        """The mode is now ``mode`` (read from the store, or just switched from a page)."""
        if mode == self.mode:
            return
        self.mode = mode
        if self.on_mode_change is not None:
            self.on_mode_change(mode)
        self._status_dirty.set()
        for page in list(self._pages):
            if page.on_mode is not None:
                with contextlib.suppress(asyncio.QueueFull):
                    page.queue.put_nowait(page.on_mode())


class FanOut:
    """One status sink for the runtime that feeds several (the MES link and the HMI)."""

    def __init__(self, *sinks: Any) -> None:
        self._sinks = sinks

    def status_changed(self, status: dict[str, Any]) -> None:
        for s in self._sinks:
            s.status_changed(status)

    def telemetry(self, data: dict[str, Any]) -> None:
        for s in self._sinks:
            s.telemetry(data)
