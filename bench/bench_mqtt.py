"""The MES link through Mosquitto: command round trip, event throughput, outage cost.

    python bench/bench_mqtt.py [--requests 1000] [--events 20000] [--nagle]

A private Mosquitto (``set_tcp_nodelay true``) on a free loopback port; the booth side is the
real record store, command authority and MES link in front of the real controller; the MES side
is an aiomqtt client. Figures:

- ``get_status`` round trip, request published -> reply received, p50/p99/max over
  ``--requests`` sequential requests (goal: p99 <= 20 ms). Each one is also put on record
  (an fsync), as every command is.
- events per second through the outbox: stored (group-committed), published at QoS 1 and
  acknowledged by the broker, and received by the MES.
- store growth per event, and what a 10-minute broker outage costs in store size at a busy
  job's event rate.

``--nagle`` leaves Nagle's algorithm on in the broker and the MES client, to show what
TCP_NODELAY buys.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

# First: puts the repository on the import path for the packages below.
import _repo  # noqa: F401
import aiomqtt

from booth_ctl.control._controller import Controller
from booth_ctl.links.mqtt import NODELAY
from devkit.broker import Broker
from tests._util import wait_for
from tests.booth_ctl._mes_helpers import Mes, booth_config, running_link

#: A busy job: state changes, unit and dip events, alarms: a few per second at most.
BUSY_EVENTS_PER_S = 5.0
OUTAGE_S = 600.0
RECEIVE_TIMEOUT_S = 120.0


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q / 100 * (len(s) - 1)))]


async def round_trips(mes: Mes, n: int) -> list[float]:
    out = []
    for _ in range(n):
        rid = uuid.uuid4().hex
        t0 = time.perf_counter()
        await mes.publish("get_status", {"request_id": rid})
        await mes.reply_to(rid)
        out.append((time.perf_counter() - t0) * 1000.0)
        mes.replies.clear()
    return out


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        broker = Broker(tmp_path / "broker")
        if args.nagle:
            broker.conf.write_text(
                broker.conf.read_text().replace("set_tcp_nodelay true", "set_tcp_nodelay false")
            )
        broker.start()
        try:
            loaded = booth_config(tmp_path, broker.port)
            booth_id = loaded.config.booth_id
            async with running_link(loaded, Controller(loaded)) as (_, records):
                client = aiomqtt.Client(
                    "127.0.0.1", broker.port, identifier="bench-mes",
                    protocol=aiomqtt.ProtocolVersion.V5,
                    socket_options=() if args.nagle else NODELAY,
                )
                async with client:
                    mes = Mes(client, booth_id)
                    await mes.start()
                    try:
                        await round_trips(mes, 20)  # warm up
                        rtt = await round_trips(mes, args.requests)
                        print(
                            f"get_status round trip over {len(rtt)} requests: "
                            f"p50 {pct(rtt, 50):.2f} ms, p99 {pct(rtt, 99):.2f} ms, "
                            f"max {max(rtt):.2f} ms, mean {statistics.fmean(rtt):.2f} ms "
                            f"(goal p99 <= 20 ms; TCP_NODELAY {'off' if args.nagle else 'on'})"
                        )

                        store = records.store
                        db = Path(loaded.config.records.path)
                        size0 = _db_size(db)
                        first = store.last_seq() + 1
                        n = args.events
                        mes.events.clear()
                        t0 = time.perf_counter()
                        for i in range(n):
                            records.submit(
                                "dip",
                                {"lot_id": "BENCH", "unit": i, "vessel": "solder1",
                                 "o2_ppm": 123.4, "solder_temp_c": 250.1, "depth_mm": 3.0,
                                 "dwell_s": 1.0},
                            )
                        await records.flush()
                        t_stored = time.perf_counter() - t0
                        last = first + n - 1
                        await mes.until(
                            lambda: mes.events and mes.events[-1]["seq"] >= last,
                            RECEIVE_TIMEOUT_S, f"event {last}",
                        )
                        t_received = time.perf_counter() - t0
                        await wait_for(
                            lambda: not store.undelivered_events(limit=1),
                            timeout_s=RECEIVE_TIMEOUT_S, what="every event marked delivered",
                            interval_s=0.001,
                        )
                        t_acked = time.perf_counter() - t0
                        print(
                            f"events through the outbox ({n}): stored {n / t_stored:.0f}/s, "
                            f"received by the MES {n / t_received:.0f}/s, all acknowledged and "
                            f"marked delivered {n / t_acked:.0f}/s"
                        )
                        per_event = (_db_size(db) - size0) / n
                        outage = per_event * BUSY_EVENTS_PER_S * OUTAGE_S
                        print(
                            f"store growth: {per_event:.0f} bytes/event (dips rows included); "
                            f"a 10-minute broker outage at {BUSY_EVENTS_PER_S:.0f} events/s "
                            f"keeps {BUSY_EVENTS_PER_S * OUTAGE_S:.0f} events waiting: "
                            f"~{outage / 1024:.0f} KiB, sent in "
                            f"{BUSY_EVENTS_PER_S * OUTAGE_S / (n / t_acked):.1f} s when it is back"
                        )
                    finally:
                        await mes.stop()
        finally:
            broker.stop()


def _db_size(db: Path) -> int:
    return sum(
        os.path.getsize(p) for p in (db, Path(f"{db}-wal")) if p.exists()
    )


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--nagle", action="store_true", help="leave Nagle on (to compare)")
    asyncio.run(main(ap.parse_args()))
