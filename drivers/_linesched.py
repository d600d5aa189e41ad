"""One queue per Modbus line: who gets the wire next, and the silence the wire needs.

A half-duplex RS-485 line (or one TCP connection to a gateway) carries one exchange at a time.
The requests of every unit on it wait in one queue, served by priority, first come first served
within a priority:

0. writes in the safe direction (heater off, contactor open, holder up): they end a hazard;
1. reads of the points the safety rules judge (a controller's PV and status, the I/O module's
   inputs, the holder's position): their age is what the stale limits measure;
2. other writes (setpoints, heartbeats, set-up);
3. every other read.

An exchange already on the wire is never cut: a safety read waits for at most the one exchange in
progress (its wire time plus the device's timeout when the unit is silent), never for the queue
of lower-priority requests behind it. On an RTU line the scheduler also keeps the inter-frame
silence (Modbus over serial line V1.02, 2.5.1.1) after every exchange, so that no request starts
before the units can see a frame boundary.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from enum import IntEnum

from ._linerate import LineRate

#: Above this baud rate the inter-frame silence is a fixed 1.75 ms (Modbus serial line 2.5.1.1).
FIXED_SILENCE_ABOVE_BAUD = 19200
FIXED_SILENCE_S = 0.00175
SILENCE_CHARS = 3.5
#: Added to every wait for the silence, so that one sleep is usually enough.
SLEEP_MARGIN_S = 0.0002
#: The weight of the newest exchange in the measured mean exchange time.
EXCHANGE_EWMA_ALPHA = 0.1


class Priority(IntEnum):
    SAFE_WRITE = 0
    SAFETY_READ = 1
    WRITE = 2
    READ = 3


def char_s(baudrate: int, parity: str = "N", stopbits: int = 1) -> float:
    """One character on the wire: start bit, 8 data bits, parity bit if any, stop bits."""
    return (1 + 8 + (0 if parity == "N" else 1) + stopbits) / baudrate


def silence_s(baudrate: int, parity: str = "N", stopbits: int = 1) -> float:
    """The RTU inter-frame silence (t3.5) at this baud rate and framing."""
    if baudrate > FIXED_SILENCE_ABOVE_BAUD:
        return FIXED_SILENCE_S
    return SILENCE_CHARS * char_s(baudrate, parity, stopbits)


async def _sleep_until(deadline_s: float) -> None:
    """Until ``time.monotonic()`` reaches the deadline, whatever the loop's timers do."""
    while True:
        wait_s = deadline_s - time.monotonic()
        if wait_s <= 0:
            return
        await asyncio.sleep(wait_s + SLEEP_MARGIN_S)


class LineScheduler:
    """A priority lock for one line, with the inter-frame silence and the line's measured load."""

    def __init__(self, name: str, silence_s: float = 0.0) -> None:
        self.name = name
        self.silence_s = silence_s
        self._busy = False
        self._queue: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._quiet_at_s = 0.0
        #: Exchanges served, by priority; and the measured mean time one exchange holds the line.
        self.served: dict[Priority, int] = dict.fromkeys(Priority, 0)
        self.exchange_s_mean = 0.0
        self._busy_s = 0.0
        self._since_s = time.monotonic()
        #: The rate of the non-safety reads this line can carry, from the measured exchanges.
        self.rate = LineRate(name)

    @property
    def waiting(self) -> int:
        return sum(1 for *_, fut in self._queue if not fut.done())

    @asynccontextmanager
    async def turn(self, priority: Priority) -> AsyncIterator[None]:
        """Hold the line for one exchange; waits behind higher priorities and earlier requests."""
        await self._acquire(priority)
        started_s = time.monotonic()
        try:
            # Checked against the clock, not trusted to one sleep: an event loop's timers may
            # fire early by up to a millisecond (uvloop's have millisecond resolution and a
            # cached "now"), which is most of the 1.75 ms silence.
            await _sleep_until(self._quiet_at_s)
            yield
        finally:
            ended_s = time.monotonic()
            self._quiet_at_s = ended_s + self.silence_s
            held_s = ended_s - started_s
            self._busy_s += held_s
            self.served[priority] += 1
            self.rate.exchanged(ended_s, held_s, safety=priority is not Priority.READ)
            a = EXCHANGE_EWMA_ALPHA
            self.exchange_s_mean = (
                held_s
                if self.exchange_s_mean == 0
                else ((1 - a) * self.exchange_s_mean + a * held_s)
            )
            self._release()

    def utilisation(self) -> float:
        """The fraction of time the line was held since the last call (0..1)."""
        now_s = time.monotonic()
        span_s = now_s - self._since_s
        busy_s, self._busy_s, self._since_s = self._busy_s, 0.0, now_s
        return min(1.0, busy_s / span_s) if span_s > 0 else 0.0

    async def _acquire(self, priority: Priority) -> None:
        if not self._busy and not self._queue:
            self._busy = True
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._queue, (int(priority), next(self._seq), fut))
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                # Granted the line as we were cancelled: pass it on.
                self._release()
            raise

    def _release(self) -> None:
        while self._queue:
            _, _, fut = heapq.heappop(self._queue)
            if not fut.done():
                fut.set_result(None)
                return
        self._busy = False


#: The reads the safety rules judge, by device kind: a block holding one of these points is read
#: at SAFETY_READ. Every read of the holder drive guards a part in the bath (its position and
#: status); every input of the I/O module is a permissive or a trip (door, e-stop, high limit,
#: vacuum); of a temperature controller, its PV and the status word with tc_open / alarm.
SAFETY_READS: dict[str, frozenset[str] | None] = {
    "temp_controller": frozenset({"pv_c", "status"}),
    "holder_drive": None,  # None: every read
    "remote_io": None,
    # What the O2 permissive judges: the value and the status word with status_ok.
    "o2_analyzer": frozenset({"ppm", "status"}),
}
#: Writes that end a hazard, by device kind: point -> the value that is the safe direction.
SAFE_WRITES: dict[str, dict[str, float]] = {
    "temp_controller": {"run": 0.0},
    "remote_io": {"heater_contactor": 0.0},
}
#: The holder's withdrawal: a z target above (numerically below) the last position read.
HOLDER_Z_TARGET = "z_target_mm"


def read_priority(kind: str, table: str, points: tuple[str, ...]) -> Priority:
    """The priority of one block read of a device of this kind."""
    if kind not in SAFETY_READS:
        return Priority.READ
    names = SAFETY_READS[kind]
    if names is None:
        # The I/O module's coils are its own outputs read back, not inputs of a rule.
        return Priority.READ if table == "coil" else Priority.SAFETY_READ
    return Priority.SAFETY_READ if any(p in names for p in points) else Priority.READ


def write_priority(kind: str, point: str, value: float | bool, z_now_mm: float | None) -> Priority:
    """The priority of one write: SAFE_WRITE when it moves the device toward its safe state."""
    safe = SAFE_WRITES.get(kind, {}).get(point)
    if safe is not None and float(value) == safe:
        return Priority.SAFE_WRITE
    if (
        kind == "holder_drive"
        and point == HOLDER_Z_TARGET
        and z_now_mm is not None
        and float(value) < z_now_mm
    ):
        return Priority.SAFE_WRITE
    return Priority.WRITE
