"""The poll rates one line can carry, from the measured time of its exchanges.

The config check (``booth_ctl.config._lines``) computes a line's load from frames and wire time
before the booth starts; at run time a unit may answer slower than its manual says, time out,
or a USB adapter may add its latency to every exchange. ``LineRate`` watches what the line
really does, window by window:

- every exchange's time on the line, split into the safety reads and writes the scheduler
  serves first and the other reads (``Priority.READ``);
- how often each safety-read block of each unit was actually read.

When the line is busier than ``BUSY_HIGH`` of its time, or a safety read falls behind what its
stale limit needs, the other reads are sent at a lower rate: the line's ``divider`` doubles, up
to ``DIVIDER_MAX``, and each device skips its non-safety blocks on all but every ``k``-th poll,
``k`` the divider capped so that those readings still come ``POLLS_PER_STALE`` times within the
device's ``stale_s`` (``skip_cap``: nothing becomes stale because of it). When the line would
carry the doubled rate with room (``BUSY_LOW``), the divider halves again.

Safety reads are never slowed. If even they cannot be kept (a safety block read less often than
``POLLS_PER_STALE / stale_s`` over a window) while the other reads are already as low as they
go, the line is overloaded: one error names the line and the numbers, once per episode, and
``overload`` holds that text until a whole window is on time again.

Pure logic on a clock given by the caller: tested on a virtual clock.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

log = logging.getLogger("drivers.line")

#: The span over which the line's figures are taken before the rates are decided again.
WINDOW_S = 1.0
#: Busier than this fraction of the time, the non-safety reads go slower.
BUSY_HIGH = 0.85
#: The divider halves only if the line, with the non-safety reads at twice their rate, would
#: stay under this fraction (hysteresis: no flapping between two dividers).
BUSY_LOW = 0.6
#: The lowest rate of the non-safety reads is 1 / DIVIDER_MAX of the configured one.
DIVIDER_MAX = 8
#: A safety block read at less than this fraction of the rate its stale limit needs is late
#: (room for the jitter of a poll grid set at exactly that rate).
LATE_FRACTION = 0.9


@dataclass
class _Block:
    """One safety-read block of one unit: its reads in the current window."""

    need_hz: float
    first_s: float | None = None
    last_s: float | None = None
    reads: int = 0

    def rate_hz(self) -> float | None:
        """The measured rate over the window; None when too few reads to tell (a silent unit is
        its own fault, reported as lost communication, not as the line's load)."""
        if self.reads < 2 or self.first_s is None or self.last_s is None:
            return None
        span_s = self.last_s - self.first_s
        return (self.reads - 1) / span_s if span_s > 0 else None


@dataclass
class LineRate:
    """Decides one line's divider for non-safety reads; see the module text."""

    name: str
    window_s: float = WINDOW_S
    divider: int = 1
    #: The overload text while an episode lasts (None: the safety reads are kept).
    overload: str | None = None
    #: Overload episodes since start.
    overloads: int = 0
    #: The last window's figures: busy fraction, of it the non-safety reads, mean exchange.
    busy: float = 0.0
    busy_other: float = 0.0
    exchange_s_mean: float = 0.0
    _start_s: float | None = None
    _busy_s: float = 0.0
    _other_s: float = 0.0
    _exchanges: int = 0
    _blocks: dict[tuple[str, int, str], _Block] = field(default_factory=dict)

    def exchanged(self, now_s: float, held_s: float, *, safety: bool) -> None:
        """One exchange ended at ``now_s`` after holding the line ``held_s``; ``safety``: a safe
        write, a safety read or another write (everything served before the other reads)."""
        if self._start_s is None:
            self._start_s = now_s - held_s
        self._busy_s += held_s
        self._exchanges += 1
        if not safety:
            self._other_s += held_s
        if now_s - self._start_s >= self.window_s:
            self._decide(now_s)

    def safety_read(
        self, now_s: float, device: str, address: int, table: str, need_hz: float
    ) -> None:
        """A safety-read block of ``device`` was read; its stale limit needs ``need_hz``."""
        blk = self._blocks.get((device, address, table))
        if blk is None:
            blk = self._blocks[(device, address, table)] = _Block(need_hz)
        blk.need_hz = need_hz
        if blk.first_s is None:
            blk.first_s = now_s
        blk.last_s = now_s
        blk.reads += 1

    def skip_cap(self, stale_s: float, poll_interval_s: float, polls_per_stale: int) -> int:
        """The divider one device may apply: its non-safety readings still come
        ``polls_per_stale`` times within ``stale_s`` at its measured poll interval."""
        if poll_interval_s <= 0:
            return 1
        cap = math.floor(stale_s / polls_per_stale / poll_interval_s + 1e-9)
        return max(1, min(self.divider, cap))

    # ------------------------------------------------------------------ the decision

    def _late(self) -> list[str]:
        late = []
        for (device, address, table), blk in self._blocks.items():
            rate = blk.rate_hz()
            if rate is not None and rate < LATE_FRACTION * blk.need_hz:
                late.append(
                    f"{device} {table} {address}: read at {rate:.2f} Hz, its stale limit needs "
                    f"{blk.need_hz:.2f} Hz"
                )
        return late

    def _decide(self, now_s: float) -> None:
        assert self._start_s is not None
        span_s = max(now_s - self._start_s, 1e-9)
        self.busy = min(1.0, self._busy_s / span_s)
        self.busy_other = min(1.0, self._other_s / span_s)
        self.exchange_s_mean = self._busy_s / self._exchanges if self._exchanges else 0.0
        late = self._late()
        if (self.busy >= BUSY_HIGH or late) and self.divider < DIVIDER_MAX and self._other_s > 0:
            self.divider *= 2
            log.warning(
                "line %s: %.0f %% busy (an exchange %.1f ms): non-safety reads at 1/%d of "
                "their rate",
                self.name, 100 * self.busy, 1000 * self.exchange_s_mean, self.divider,
            )  # fmt: skip
        elif self.divider > 1 and not late and self.busy + self.busy_other < BUSY_LOW:
            self.divider //= 2
            log.info("line %s: non-safety reads at 1/%d of their rate", self.name, self.divider)
        lowest = self.divider >= DIVIDER_MAX or self._other_s == 0
        if late and lowest and self.overload is None:
            self.overload = (
                f"line {self.name} cannot keep its safety reads: {'; '.join(late)} "
                f"({100 * self.busy:.0f} % busy, an exchange {1000 * self.exchange_s_mean:.1f} ms "
                f"on average, non-safety reads already at 1/{self.divider})"
            )
            self.overloads += 1
            log.error("%s", self.overload)
        elif not late and self.overload is not None:
            log.warning("line %s keeps its safety reads again", self.name)
            self.overload = None
        self._start_s = now_s
        self._busy_s = self._other_s = 0.0
        self._exchanges = 0
        for blk in self._blocks.values():
            blk.first_s = blk.last_s = None
            blk.reads = 0
