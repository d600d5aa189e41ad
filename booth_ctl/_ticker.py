"""Scan pacing against absolute deadlines.

A bare ``asyncio.sleep`` wakes 1-2 ms late at p99 (epoll rounds its timeouts up to whole
milliseconds). A dedicated thread sleeping to each absolute deadline is ~0.3 ms late at p99, and
hands the tick to the loop with ``call_soon_threadsafe``. Missed deadlines are skipped, not
bunched: after an overrun the scan resumes on the period grid instead of racing to catch up.
"""

from __future__ import annotations

import asyncio
import threading
import time
from types import TracebackType

#: Wake this much before the deadline and spin the rest: thread sleeps overshoot by ~0.1 ms.
_SPIN_S = 0.0002


class Ticker:
    """``async with Ticker(period_s) as t: deadline = await t.next()``.

    ``next()`` returns the deadline (``time.monotonic()`` seconds) of the tick it waited for.
    """

    def __init__(self, period_s: float) -> None:
        if period_s <= 0:
            raise ValueError(f"scan period must be > 0 s, got {period_s}")
        self.period_s = period_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._waiter: asyncio.Future[float] | None = None
        self._lock = threading.Lock()
        self._latest: float | None = None
        #: Ticks that fired while the previous scan had not yet taken the one before.
        self.skipped = 0

    async def __aenter__(self) -> Ticker:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="scan-ticker", daemon=True)
        self._thread.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 2.0)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.cancel()

    async def next(self) -> float:
        """Wait for the next tick; return its deadline. Ticks missed meanwhile are dropped."""
        assert self._loop is not None, "Ticker used outside 'async with'"
        with self._lock:
            deadline, self._latest = self._latest, None
        if deadline is not None:
            return deadline
        self._waiter = self._loop.create_future()
        return await self._waiter

    def _wake(self) -> None:
        """Runs in the loop: hand the newest tick to a waiting ``next()``."""
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        with self._lock:
            deadline, self._latest = self._latest, None
        if deadline is not None:
            self._waiter = None
            waiter.set_result(deadline)

    def _run(self) -> None:
        assert self._loop is not None
        period = self.period_s
        deadline = time.monotonic() + period
        while not self._stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining > _SPIN_S:
                time.sleep(remaining - _SPIN_S)
            while time.monotonic() < deadline:
                pass
            with self._lock:
                if self._latest is not None:
                    self.skipped += 1  # the previous tick was never taken: a scan overran
                self._latest = deadline
            try:
                self._loop.call_soon_threadsafe(self._wake)
            except RuntimeError:
                return  # the loop closed under us: nothing left to pace
            deadline += period
            now = time.monotonic()
            if now > deadline:
                # Overrun (the machine stalled): skip to the grid point after now.
                missed = int((now - deadline) / period) + 1
                deadline += missed * period
