"""An RTU reply read in one piece, not byte by byte as the line delivers it.

A serial line hands its bytes over as they leave the wire (a USB adapter with a 1 ms latency
timer, a pseudo-terminal paced by the simulator): a 9-byte reply at 19200 baud comes in up to
nine pieces, and each piece wakes the event loop and runs pymodbus's framer. Most of a supervisor
at rest is such wake-ups. Yet the earliest instant a whole reply can be there is known when the
request goes out: the request's and the reply's frames at the line's character time, plus the
silence and the unit's turnaround, which this class measures. Until then the port's reader is
paused, and the bytes wait in the kernel's buffer; then one read takes them all.

Never later than the reply: the turnaround used is the least one measured over the last
exchanges less a margin, so the reader resumes before the last byte arrives (what comes after
is read as it comes, as before); a unit that never answers costs nothing more than its timeout.
Only pymodbus's serial transport with its fd reader is paused (not its polling fallback).
"""

from __future__ import annotations

import asyncio
import collections
import time
from typing import Any

#: Reply length of each function code: fixed, or from the request's quantity (header + CRC 5).
_FIXED_REPLY = {5: 8, 6: 8, 15: 8, 16: 8}
#: The shortest reply (an exception reply): what is assumed for any other function.
MIN_REPLY_BYTES = 5
#: Turnarounds remembered; the least of them is used.
TURNAROUND_SAMPLES = 16
#: Taken off the measured turnaround, so that the reader is back before the reply's end (the
#: loop's timers may fire up to about a millisecond late).
MARGIN_S = 0.001


def reply_bytes(request: bytes) -> int:
    """The length of the normal reply to an RTU request frame (unit, function, data, CRC)."""
    if len(request) < 8:
        return MIN_REPLY_BYTES
    fc = request[1]
    if fc in _FIXED_REPLY:
        return _FIXED_REPLY[fc]
    count = int.from_bytes(request[4:6], "big")
    if fc in (1, 2):
        return 5 + (count + 7) // 8
    if fc in (3, 4):
        return 5 + 2 * count
    return MIN_REPLY_BYTES


class ReplyWait:
    """Pauses one serial client's reader from each request until its reply can be complete."""

    def __init__(self, char_s: float) -> None:
        self.char_s = char_s
        self._turnarounds: collections.deque[float] = collections.deque(maxlen=TURNAROUND_SAMPLES)
        self._handle: asyncio.TimerHandle | None = None
        #: What the pending timer will do: the loop, the transport, its fd and its reader.
        self._pending: tuple[asyncio.AbstractEventLoop, Any, int, Any] | None = None
        self._sent_s = 0.0
        self._request_bytes = 0
        self._rx_bytes = 0
        self._last_rx_s = 0.0

    @property
    def turnaround_s(self) -> float:
        """The least turnaround measured recently less the margin (0 before any)."""
        return max(0.0, min(self._turnarounds) - MARGIN_S) if self._turnarounds else 0.0

    def sent(self, client: Any, request: bytes) -> None:
        """A request goes out on ``client``: pause its reader until the reply can be whole."""
        self._measure()
        self.resume()
        self._sent_s = time.monotonic()
        self._request_bytes = len(request)
        self._rx_bytes = 0
        transport = getattr(getattr(client, "ctx", None), "transport", None)
        port = getattr(transport, "sync_serial", None)
        reader = getattr(transport, "intern_read_ready", None)
        if port is None or reader is None or getattr(transport, "poll_task", None) is not None:
            return
        loop = asyncio.get_running_loop()
        fd = port.fileno()
        wait_s = (len(request) + reply_bytes(request)) * self.char_s + self.turnaround_s
        # Not by remove_reader's result: uvloop's says False for a reader it did remove.
        loop.remove_reader(fd)
        self._pending = (loop, transport, fd, reader)
        self._handle = loop.call_later(wait_s, self._add_reader)

    def received(self, data: bytes) -> None:
        """Bytes arrived: pymodbus hands over its whole receive buffer so far, each time."""
        self._rx_bytes = max(self._rx_bytes, len(data))
        self._last_rx_s = time.monotonic()

    def resume(self) -> None:
        """Reading back on now (a request's wait cut short: the next request, a close)."""
        if self._handle is not None:
            self._handle.cancel()
            self._add_reader()

    def _add_reader(self) -> None:
        self._handle = None
        pending, self._pending = self._pending, None
        if pending is None:
            return
        loop, transport, fd, reader = pending
        port = getattr(transport, "sync_serial", None)
        if port is not None and port.is_open and port.fileno() == fd:
            loop.add_reader(fd, reader)

    def _measure(self) -> None:
        """The last exchange's turnaround: its last byte's arrival less the frames' time."""
        if self._rx_bytes and self._last_rx_s > self._sent_s:
            wire_s = (self._request_bytes + self._rx_bytes) * self.char_s
            self._turnarounds.append(max(0.0, self._last_rx_s - self._sent_s - wire_s))
        self._rx_bytes = 0
