"""The record store on its own thread, for the event loop.

A commit is an fsync (milliseconds on real storage): never on the loop's thread, where the scan
runs. Every store call goes to one dedicated worker thread, in submission order. Events are group
committed: whatever is submitted while a commit runs goes into the next transaction.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
from collections.abc import Callable, Mapping
from typing import Any, ParamSpec, Protocol, TypeVar

from booth_ctl.records._store import RecordStore

log = logging.getLogger("booth_ctl.records")

P = ParamSpec("P")
T = TypeVar("T")

#: Events committed in one transaction at most (bounds the time of one commit).
MAX_BATCH = 500
#: On a clean stop, events still queued get this long to be stored.
CLOSE_FLUSH_S = 10.0
#: After a failed commit, the writer tries again this often (the events stay queued).
RETRY_S = 0.5


class EventLike(Protocol):
    @property
    def type(self) -> str: ...

    @property
    def data(self) -> Mapping[str, Any]: ...


class Records:
    """Async front of a :class:`RecordStore`; an async context manager owning its thread and task.

    - ``await put(event)`` / ``submit(type, data)``: store events (the outbox) in order.
    - ``await call(store.method, ...)``: any other store call, off the loop's thread.
    - ``on_committed(callback)``: called on the loop after events are durably stored (the MES
      link's ``events_available``).
    """

    def __init__(self, store: RecordStore) -> None:
        self.store = store
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._pending: list[tuple[str, Mapping[str, Any], asyncio.Future[tuple[int, float]]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._listeners: list[Callable[[], None]] = []

    async def __aenter__(self) -> Records:
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="records")
        self._task = asyncio.create_task(self._writer(), name="records-writer")
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            # Whatever was submitted is stored before the thread goes: nothing acknowledged to
            # the scan is dropped on a clean stop.
            if self._pending and self._task is not None and not self._task.done():
                try:
                    async with asyncio.timeout(CLOSE_FLUSH_S):
                        await self.flush()
                except TimeoutError:
                    log.error(
                        "stopping with %d events not stored: the record store did not take "
                        "them within %.0f s", len(self._pending), CLOSE_FLUSH_S,
                    )
        finally:
            if self._task is not None:
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)
            if self._executor is not None:
                self._executor.shutdown(wait=True)
            for _, _, fut in self._pending:
                if not fut.done():
                    fut.cancel()

    def on_committed(self, callback: Callable[[], None]) -> None:
        self._listeners.append(callback)

    async def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a blocking store call on the store's thread."""
        if self._executor is None:
            raise RuntimeError("Records used outside its async context")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    def submit(self, type_: str, data: Mapping[str, Any]) -> asyncio.Future[tuple[int, float]]:
        """Queue an event for storing; never blocks. The future gives its ``(seq, ts)``."""
        fut: asyncio.Future[tuple[int, float]] = asyncio.get_running_loop().create_future()
        self._pending.append((type_, dict(data), fut))
        self._wake.set()
        return fut

    async def put(self, event: EventLike) -> None:
        """Store one event and wait until it is durable (the runtime's event sink)."""
        await self.submit(event.type, event.data)

    async def record(self, type_: str, data: Mapping[str, Any]) -> tuple[int, float]:
        """Store one event, wait until it is durable, return its ``(seq, ts)``."""
        return await self.submit(type_, data)

    async def flush(self) -> None:
        """Wait until every event submitted so far is stored."""
        futs = [f for _, _, f in self._pending]
        if futs:
            await asyncio.gather(*futs, return_exceptions=True)

    async def _writer(self) -> None:
        failing = False
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch = self._pending[:MAX_BATCH]
                try:
                    results = await self.call(
                        self.store.record_events, [(t, d) for t, d, _ in batch]
                    )
                except Exception as exc:
                    # Events must not be lost: keep them queued and retry; the store may come
                    # back (disk full cleared, lock released).
                    if not failing:
                        log.error("cannot store events (%d waiting): %s", len(self._pending), exc)
                        failing = True
                    await asyncio.sleep(RETRY_S)
                    continue
                if failing:
                    log.warning("storing events works again")
                    failing = False
                del self._pending[: len(batch)]
                for (_, _, fut), res in zip(batch, results, strict=True):
                    if not fut.done():
                        fut.set_result(res)
                for cb in self._listeners:
                    cb()
