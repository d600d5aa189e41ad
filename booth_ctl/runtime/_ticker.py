"""Scan pacing against absolute deadlines, by a kernel timer the event loop waits on.

A bare ``asyncio.sleep`` wakes 1-2 ms late at p99: epoll rounds its own timeout up to whole
milliseconds. A timerfd is a file descriptor that turns readable at each expiry of a periodic
high-resolution timer on ``CLOCK_MONOTONIC`` (the clock of ``time.monotonic()``); epoll wakes the
loop at that instant, whatever its timeout would have been. No thread, no lock, no hand-over of
the GIL: the tick costs one wake-up and one 8-byte read.

The timer runs on a fixed grid. A read returns how many expiries happened since the last one; a
scan that overran sees more than one, and the missed ticks are skipped, not bunched: the scan
resumes on the grid instead of racing to catch up.

The ticker is also the clock of the runtime's other paced tasks (pollers, heartbeats):
``until(deadline)`` ends at the first tick at or after the deadline. A task woken by its own
timer costs a wake-up of the whole process (an epoll return, a context switch) on top of its
work; woken on a tick, it rides the wake-up the scan takes anyway. The price is up to one scan
period of delay, which every paced task here tolerates (a heartbeat is due at a quarter of the
device's own timeout; a poll at its rate's period). ``SleepClock`` offers the same with the
loop's own timers, for code run without a ticker.

Linux only (the booth PC runs systemd); Python 3.13 has ``os.timerfd_create``, 3.11 reaches the
same system calls through ctypes.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import math
import os
import struct
import time
from typing import Protocol

_CLOCK_MONOTONIC = 1
_TFD_TIMER_ABSTIME = 1
_TFD_NONBLOCK = os.O_NONBLOCK
_TFD_CLOEXEC = os.O_CLOEXEC
_NS = 1_000_000_000


class _Timespec(ctypes.Structure):
    _fields_ = (("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long))


class _Itimerspec(ctypes.Structure):
    _fields_ = (("it_interval", _Timespec), ("it_value", _Timespec))


def _timespec(seconds_ns: int) -> _Timespec:
    return _Timespec(seconds_ns // _NS, seconds_ns % _NS)


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.timerfd_create.argtypes = (ctypes.c_int, ctypes.c_int)
    libc.timerfd_create.restype = ctypes.c_int
    libc.timerfd_settime.argtypes = (
        ctypes.c_int,
        ctypes.c_int,
        ctypes.POINTER(_Itimerspec),
        ctypes.POINTER(_Itimerspec),
    )
    libc.timerfd_settime.restype = ctypes.c_int
    return libc


class Clock(Protocol):
    async def until(self, deadline_s: float, wake: asyncio.Event | None = None) -> bool:
        """Wait until ``time.monotonic()`` has reached ``deadline_s``, or ``wake`` is set;
        return whether ``wake`` ended the wait. A deadline already past returns at once."""
        ...


class SleepClock:
    """The ``Clock`` of the loop's own timers: each wait is a timer of its own."""

    async def until(self, deadline_s: float, wake: asyncio.Event | None = None) -> bool:
        delay_s = deadline_s - time.monotonic()
        if delay_s <= 0:
            return False
        if wake is None:
            await asyncio.sleep(delay_s)
            return False
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay_s):
                await wake.wait()
                return True
        return False


class Ticker:
    """``async with Ticker(period_s) as t: deadline = await t.next()``.

    ``next()`` returns the deadline (``time.monotonic()`` seconds) of the tick it waited for.
    ``until()`` is the ``Clock`` of the tasks paced beside the scan (see the module's text).
    """

    def __init__(self, period_s: float) -> None:
        if not (period_s > 0 and math.isfinite(period_s)):
            raise ValueError(f"scan period must be > 0 s, got {period_s}")
        self.period_s = period_s
        self._period_ns = round(period_s * _NS)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._fd = -1
        self._next_ns = 0
        self._waiter: asyncio.Future[float] | None = None
        #: The newest tick not yet taken by ``next()``.
        self._latest: float | None = None
        #: Ticks that passed while the previous scan had not yet taken the one before.
        self.skipped = 0
        #: Waits of ``until()``: deadline, the event that may end it early, its future.
        self._alarms: list[tuple[float, asyncio.Event | None, asyncio.Future[bool]]] = []

    async def __aenter__(self) -> Ticker:
        self._loop = asyncio.get_running_loop()
        libc = _libc()
        fd = libc.timerfd_create(_CLOCK_MONOTONIC, _TFD_NONBLOCK | _TFD_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"timerfd_create: {os.strerror(err)}")
        self._fd = fd
        self._next_ns = time.monotonic_ns() + self._period_ns
        spec = _Itimerspec(_timespec(self._period_ns), _timespec(self._next_ns))
        if libc.timerfd_settime(fd, _TFD_TIMER_ABSTIME, ctypes.byref(spec), None) < 0:
            err = ctypes.get_errno()
            os.close(fd)
            self._fd = -1
            raise OSError(err, f"timerfd_settime: {os.strerror(err)}")
        self._loop.add_reader(fd, self._on_expiry)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._fd >= 0:
            assert self._loop is not None
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1
        if self._waiter is not None and not self._waiter.done():
            self._waiter.cancel()
        for _, _, fut in self._alarms:
            fut.cancel()
        self._alarms.clear()

    async def next(self) -> float:
        """Wait for the next tick; return its deadline. Ticks missed meanwhile are dropped."""
        assert self._loop is not None, "Ticker used outside 'async with'"
        if self._latest is not None:
            deadline, self._latest = self._latest, None
            return deadline
        self._waiter = self._loop.create_future()
        try:
            return await self._waiter
        finally:
            self._waiter = None

    async def until(self, deadline_s: float, wake: asyncio.Event | None = None) -> bool:
        """The ``Clock`` wait: ends on the first tick at or after ``deadline_s``, or on the first
        tick that finds ``wake`` set."""
        assert self._loop is not None, "Ticker used outside 'async with'"
        if deadline_s <= time.monotonic():
            return False
        if wake is not None and wake.is_set():
            return True
        alarm: tuple[float, asyncio.Event | None, asyncio.Future[bool]] = (
            deadline_s,
            wake,
            self._loop.create_future(),
        )
        self._alarms.append(alarm)
        try:
            return await alarm[2]
        except asyncio.CancelledError:
            with contextlib.suppress(ValueError):
                self._alarms.remove(alarm)
            raise

    def _ring(self) -> None:
        """Ends the ``until()`` waits that this tick is due for."""
        now_s = time.monotonic()
        keep = []
        for alarm in self._alarms:
            deadline_s, wake, fut = alarm
            if fut.done():
                continue
            if wake is not None and wake.is_set():
                fut.set_result(True)
            elif deadline_s <= now_s:
                fut.set_result(False)
            else:
                keep.append(alarm)
        self._alarms = keep

    def _on_expiry(self) -> None:
        """Runs in the loop when the timer fired: hand the newest tick to ``next()``."""
        try:
            data = os.read(self._fd, 8)
        except BlockingIOError:
            return  # woken without an expiry to read (it was read already)
        (expiries,) = struct.unpack("=Q", data)
        if expiries == 0:
            return
        self._next_ns += expiries * self._period_ns
        deadline = (self._next_ns - self._period_ns) / _NS
        # Every expiry but the newest was never handed out; so was an untaken earlier tick.
        missed = expiries - 1 + (1 if self._latest is not None else 0)
        self.skipped += missed
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            self._latest = None
            waiter.set_result(deadline)
        else:
            self._latest = deadline
        # After the scan's wake-up: the scan's task runs first in this turn of the loop, the
        # paced tasks (a poller sending its request) after it, never ahead of it.
        if self._alarms:
            self._ring()
