"""The load of each RS-485 line: frames x wire time, against what the safety points need.

Devices that name the same serial port share one half-duplex line (CONTRACT s.2). Every poll of
every unit and every heartbeat costs its request and reply frames at the line's baud rate, the
inter-frame silence after each (Modbus over serial line V1.02, 2.5.1.1) and the unit's
turnaround. A config whose line cannot carry that, or whose poll round on the line is too slow
for a safety point to be read ``POLLS_PER_STALE`` times within its ``stale_s``, is refused with
the numbers: it would make a healthy line look like a device fault, or hide a real one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from drivers import DeviceConfig, RegisterMap, RtuTransport
from drivers._codec import Block, plan_reads
from drivers._config import POLLS_PER_STALE
from drivers._linesched import char_s, silence_s

#: A unit's turnaround assumed for the load (request received to reply started): controllers'
#: manuals give 1-10 ms by default (often a "response delay" setting). 5 ms is on the safe side
#: of most; unconfirmed for any one model.
ASSUMED_TURNAROUND_S = 0.005
#: The most of a line's time the polls and heartbeats may take: the rest is for retries, writes
#: of setpoints and outputs, and the timeouts of a unit that went silent.
LINE_LOAD_MAX = 0.7
#: A write single register / coil (FC 05/06): 8-byte request, 8-byte echo.
WRITE_FRAME_BYTES = 8
#: A read request (FC 01-04): address, function, start, count, CRC.
READ_REQUEST_BYTES = 8
#: A read reply's address, function, byte count and CRC.
READ_REPLY_OVERHEAD_BYTES = 5
#: Heartbeats and watchdog refreshes go out at this many per timeout (the runtime's rule).
HEARTBEATS_PER_TIMEOUT = 4


@dataclass(frozen=True)
class LineLoad:
    port: str
    baudrate: int
    devices: tuple[str, ...]
    #: Requests per second at the active poll rates, and the fraction of the line they hold.
    requests_per_s: float
    load: float
    #: One poll of every unit on the line, back to back.
    round_s: float
    #: Per unit: how long it holds the line when it does not answer (its timeout on each try).
    silent_s: tuple[float, ...]


def _exchange_s(t: RtuTransport, request_bytes: int, reply_bytes: int) -> float:
    c = char_s(t.baudrate, t.parity, t.stopbits)
    quiet = silence_s(t.baudrate, t.parity, t.stopbits)
    return (request_bytes + reply_bytes) * c + 2 * quiet + ASSUMED_TURNAROUND_S


def _reply_bytes(block: Block) -> int:
    if block.table in ("coil", "discrete"):
        return READ_REPLY_OVERHEAD_BYTES + math.ceil(block.count / 8)
    return READ_REPLY_OVERHEAD_BYTES + 2 * block.count


def line_loads(
    devices: Mapping[str, DeviceConfig], maps: Mapping[str, RegisterMap]
) -> list[LineLoad]:
    """The load of every RTU line of the config."""
    by_port: dict[str, list[str]] = {}
    for name, dev in devices.items():
        if isinstance(dev.transport, RtuTransport) and name in maps:
            by_port.setdefault(dev.transport.port, []).append(name)
    loads = []
    for port, names in by_port.items():
        first = devices[names[0]].transport
        assert isinstance(first, RtuTransport)
        busy = per_s = round_s = 0.0
        silent_s: list[float] = []
        for name in names:
            dev = devices[name]
            blocks = plan_reads(maps[name])
            poll_s = sum(_exchange_s(first, READ_REQUEST_BYTES, _reply_bytes(b)) for b in blocks)
            write_s = _exchange_s(first, WRITE_FRAME_BYTES, WRITE_FRAME_BYTES)
            beat_hz = 0.0
            if dev.comm_timeout_s is not None:
                beat_hz = HEARTBEATS_PER_TIMEOUT / dev.comm_timeout_s
            elif dev.watchdog_ms is not None:
                beat_hz = HEARTBEATS_PER_TIMEOUT / (dev.watchdog_ms / 1000.0)
            busy += dev.poll_hz * poll_s + beat_hz * write_s
            per_s += dev.poll_hz * len(blocks) + beat_hz
            round_s += poll_s + (write_s if beat_hz else 0.0)
            # A unit that went silent holds the line for its timeout on each try.
            silent_s.append(dev.timeout_s * (1 + dev.retries))
        loads.append(
            LineLoad(port, first.baudrate, tuple(names), per_s, busy, round_s, tuple(silent_s))
        )
    return loads


def line_problems(
    devices: Mapping[str, DeviceConfig], maps: Mapping[str, RegisterMap]
) -> list[str]:
    """Every line that cannot carry its units, or cannot refresh a reading within its stale_s."""
    problems = []
    for line in line_loads(devices, maps):
        names = ", ".join(line.devices)
        if line.load > LINE_LOAD_MAX:
            problems.append(
                f"devices {names} share {line.port} at {line.baudrate} baud: "
                f"{line.requests_per_s:.0f} requests/s take {100 * line.load:.0f} % of the line "
                f"(frames x wire time), more than {100 * LINE_LOAD_MAX:.0f} %: lower poll_hz, "
                "raise the baud rate or split the line"
            )
        for i, name in enumerate(line.devices):
            dev = devices[name]
            # The worst round for this unit: every poll, and another unit gone silent.
            others_silent_s = max((s for j, s in enumerate(line.silent_s) if j != i), default=0.0)
            period_s = max(1.0 / dev.poll_hz, line.round_s + others_silent_s)
            if POLLS_PER_STALE * period_s > dev.stale_s + 1e-9:
                problems.append(
                    f"devices.{name}.stale_s: {dev.stale_s:g} s is shorter than "
                    f"{POLLS_PER_STALE} polls of {line.port} at {line.baudrate} baud "
                    f"({POLLS_PER_STALE} x {1000 * period_s:.0f} ms: one round of "
                    f"{len(line.devices)} unit(s), another one silent): raise stale_s or the "
                    "baud rate"
                )
    return problems
