"""The timing of a serial wire, for a pseudo-terminal that has none.

A pty carries whatever is written at once. A real RS-485 line carries one character every
``(start + data + parity + stop bits) / baud`` seconds, and Modbus RTU delimits frames by
silence (Modbus over serial line V1.02, 2.5.1.1): at least 3.5 character times between frames,
a fixed 1.75 ms above 19200 baud, and a frame whose characters are not contiguous, or that starts
before the silence has elapsed, is not a frame. ``WireTiming`` is that arithmetic; ``WireClock``
keeps the state of one half-duplex line (who has the wire, until when) in monotonic seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: Above this baud rate the inter-frame silence is a fixed 1.75 ms (Modbus serial line 2.5.1.1),
#: not 3.5 character times: at high rates the UART's interrupt load would otherwise decide it.
FIXED_SILENCE_ABOVE_BAUD = 19200
FIXED_SILENCE_S = 0.00175
SILENCE_CHARS = 3.5
#: Bits of one character: a start bit and 8 data bits, plus parity and stop bits.
START_BITS = 1
DATA_BITS = 8


@dataclass(frozen=True, slots=True)
class WireTiming:
    """The framing of one serial line, and what it costs in time."""

    baudrate: int
    parity: str = "N"
    stopbits: int = 1

    def __post_init__(self) -> None:
        if self.baudrate <= 0:
            raise ValueError(f"baudrate must be positive, not {self.baudrate}")
        if self.parity not in ("N", "E", "O"):
            raise ValueError(f"parity must be N, E or O, not {self.parity!r}")
        if self.stopbits not in (1, 2):
            raise ValueError(f"stopbits must be 1 or 2, not {self.stopbits}")

    @property
    def bits_per_char(self) -> int:
        return START_BITS + DATA_BITS + (0 if self.parity == "N" else 1) + self.stopbits

    @property
    def char_s(self) -> float:
        """One character on the wire."""
        return self.bits_per_char / self.baudrate

    @property
    def silence_s(self) -> float:
        """The inter-frame silence (t3.5)."""
        if self.baudrate > FIXED_SILENCE_ABOVE_BAUD:
            return FIXED_SILENCE_S
        return SILENCE_CHARS * self.char_s

    def frame_s(self, n_bytes: int) -> float:
        """The wire time of a frame of ``n_bytes`` characters."""
        return n_bytes * self.char_s

    def exchange_s(self, request_bytes: int, reply_bytes: int, turnaround_s: float) -> float:
        """One request and its reply: both frames, the silence after each and the turnaround."""
        return (
            self.frame_s(request_bytes)
            + self.silence_s
            + turnaround_s
            + self.frame_s(reply_bytes)
            + self.silence_s
        )

    def bytes_due(self, start_s: float, now_s: float) -> int:
        """How many characters of a frame started at ``start_s`` have fully left by ``now_s``."""
        if now_s <= start_s:
            return 0
        return math.floor((now_s - start_s) / self.char_s + 1e-9)


class WireClock:
    """One half-duplex line: who last had the wire, and until when.

    ``rx`` is what the master sends (it reaches us at once through the pty; on the wire it would
    take its characters' time), ``tx`` is what the unit sends back. A master frame that starts
    while the unit is sending, or within the silence after the last frame, collides: lost.
    """

    def __init__(self, timing: WireTiming) -> None:
        self.timing = timing
        #: When the master's current frame will have fully arrived on the wire.
        self.rx_end_s = -math.inf
        #: When the line's last transmission (either side) ended on the wire.
        self.quiet_since_s = -math.inf
        #: Set while the unit sends: any master byte then is a collision.
        self.tx_busy = False
        self.rx_pending = False
        self.rx_broken = False
        #: Why the last lost frame was lost (for the log and the tests).
        self.broken_reason = ""

    def receive(self, n_bytes: int, now_s: float) -> None:
        """``n_bytes`` from the master reached us at ``now_s``."""
        t = self.timing
        if self.rx_pending and now_s <= self.rx_end_s + 1.5 * t.char_s:
            # Contiguous with the frame on the wire (within 1.5 characters): the same frame.
            self.rx_end_s = max(now_s, self.rx_end_s) + t.frame_s(n_bytes)
            return
        if self.rx_pending:
            # A gap inside a frame longer than 1.5 characters (and not yet 3.5 after its end,
            # else the frame would have been taken): the frame is broken.
            self.rx_broken = True
            self.broken_reason = f"gap of {1000 * (now_s - self.rx_end_s):.2f} ms inside a frame"
            self.rx_end_s = now_s + t.frame_s(n_bytes)
            return
        self.rx_pending = True
        self.rx_broken = self.tx_busy or now_s < self.quiet_since_s + t.silence_s
        if self.tx_busy:
            self.broken_reason = "started while a unit was sending"
        elif self.rx_broken:
            self.broken_reason = (
                f"started {1000 * (now_s - self.quiet_since_s):.2f} ms after the last frame "
                f"(silence {1000 * t.silence_s:.2f} ms)"
            )
        self.rx_end_s = now_s + t.frame_s(n_bytes)

    def frame_due_s(self) -> float:
        """When the master's frame is complete: its end on the wire plus the silence."""
        return self.rx_end_s + self.timing.silence_s

    def take_frame(self) -> bool:
        """The frame is over; whether it kept the silence rules (else it is lost)."""
        ok = self.rx_pending and not self.rx_broken
        self.quiet_since_s = max(self.quiet_since_s, self.rx_end_s)
        self.rx_pending = False
        self.rx_broken = False
        return ok
