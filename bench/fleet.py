"""A fleet on one machine: N simulated booths (``booth-sim`` + ``boothctl run`` each) on one
broker, and the MES command round trip across them.

    python bench/fleet.py [--booths 20] [--requests 10]

Starts one private Mosquitto and, for each booth, its own simulator and supervisor (own ports,
pseudo-terminals, records), all on loopback. Once every supervisor is online and hears its
devices (or a deadline passes: those that do not are listed), each booth gets ``reset``; then
the MES sends ``get_status`` to every booth online in turn,
``--requests`` per booth, one at a time, and measures each round trip (published -> reply
received). Printed: round trip p50 / p99 / max, every booth's scan figures from its telemetry,
and the CPU and memory the fleet takes. Stops everything it started.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
from pathlib import Path
from typing import Any

from _harness import Watch, cpu_seconds, pct, rss_mb

from devkit.booth import BoothStack
from devkit.broker import Broker

UP_TIMEOUT_S = 150.0
SETTLE_S = 10.0
LOAD_WINDOW_S = 10.0


def make_stack(work: Path, i: int, port: int) -> BoothStack:
    def over(d: dict[str, Any]) -> None:
        d["booth_id"] = f"fleet-{i:02d}"
        d["mqtt"]["port"] = port

    return BoothStack(work / f"booth-{i:02d}", overrides=over)


def pids(stacks: list[BoothStack]) -> list[int]:
    out = []
    for s in stacks:
        for p in (s.sim, s.supervisor):
            if p.proc is not None and p.proc.poll() is None:
                out.append(p.proc.pid)
    return out


async def measure(broker: Broker, stacks: list[BoothStack], n_req: int) -> dict[str, Any]:
    async with contextlib.AsyncExitStack() as es:
        watches = [
            await es.enter_async_context(Watch(broker.host, broker.port, s.booth_id))
            for s in stacks
        ]
        t_start = time.monotonic()
        for s in list(stacks):
            await asyncio.to_thread(s.start_supervisor)
        for w in watches:
            with contextlib.suppress(TimeoutError):
                await w.wait(
                    w.devices_up, max(0.0, UP_TIMEOUT_S - (time.monotonic() - t_start)), "up"
                )
        up_s = time.monotonic() - t_start
        down = []
        for s, w in zip(stacks, watches, strict=True):
            if not w.devices_up():
                il = w.status.get("interlocks") or {}
                unmet = sorted(k for k in ("io_ok", "holder_ok", "heaters_ok") if not il.get(k))
                tail = s.supervisor.log_tail(600).strip().splitlines()[-3:]
                down.append(f"{w.booth_id}: online {w.online}, not ok {unmet}; log: {tail}")
        # The round trip is measured on every booth online, whether its devices answer or not.
        stacks = [s for s, w in zip(stacks, watches, strict=True) if w.online]
        watches = [w for w in watches if w.online]
        resets = await asyncio.gather(*(w.command("reset") for w in watches))
        reset_ok = sum(1 for r, _ in resets if r is not None and r.get("ok"))
        await asyncio.sleep(SETTLE_S)
        # The fleet's load at rest: CPU of every simulator and supervisor over a window.
        ps = pids(stacks)
        sup = [s.supervisor.proc.pid for s in stacks if s.supervisor.proc is not None]
        c0 = {p: cpu_seconds(p) for p in ps}
        t0 = time.monotonic()
        rtts: list[float] = []
        unanswered = 0
        for _ in range(n_req):
            for w in watches:
                reply, ms = await w.command("get_status", timeout_s=10.0)
                if reply is None:
                    unanswered += 1
                else:
                    rtts.append(ms)
        dt = time.monotonic() - t0
        if dt < LOAD_WINDOW_S:
            await asyncio.sleep(LOAD_WINDOW_S - dt)
            dt = time.monotonic() - t0
        cpu = sum(cpu_seconds(p) - c0[p] for p in ps)
        sup_cpu = sum(cpu_seconds(p) - c0[p] for p in sup)
        scans = [w.telemetry[-1][1].get("scan", {}) for w in watches if w.telemetry]
        return {
            "down": down,
            "up_s": up_s,
            "reset_ok": reset_ok,
            "rtts": rtts,
            "unanswered": unanswered,
            "cpu_cores": cpu / dt,
            "sup_cpu_pct_each": 100.0 * sup_cpu / dt / max(1, len(sup)),
            "rss_mb": sum(rss_mb(p) for p in ps),
            "scans": scans,
            "states": [w.status.get("state") for w in watches],
        }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--booths", type=int, default=20)
    ap.add_argument("--requests", type=int, default=10, help="get_status round trips per booth")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="fleet-") as tmp:
        work = Path(tmp)
        broker = Broker(work / "broker")
        stacks = [make_stack(work, i + 1, broker.port) for i in range(args.booths)]
        try:
            broker.start()
            for s in stacks:
                s.start_sim()
            r = asyncio.run(measure(broker, stacks, args.requests))
        finally:
            for s in stacks:
                s.supervisor.stop()
                s.sim.stop()
            broker.stop()
    rtts = r["rtts"]
    up = args.booths - len(r["down"])
    print(
        f"fleet: {args.booths} booths (booth-sim + boothctl run each) on one broker; {up} online "
        f"with their devices after {r['up_s']:.1f} s; reset accepted by {r['reset_ok']}"
    )
    for line in r["down"]:
        print(f"  NOT UP within {UP_TIMEOUT_S:.0f} s: {line}")
    print(
        f"  MES get_status round trip over {len(rtts)} requests (one at a time, booths in turn): "
        f"p50 {pct(rtts, 50):.2f} ms, p99 {pct(rtts, 99):.2f} ms, max {max(rtts, default=0):.2f}"
        f" ms; unanswered {r['unanswered']}"
    )
    p99s = sorted(s.get("late_p99_ms", 0.0) for s in r["scans"])
    overruns = [s.get("overruns", 0) for s in r["scans"]]
    if p99s:
        print(
            f"  scan lateness p99 per booth (telemetry, last minute): median "
            f"{p99s[len(p99s) // 2]:.2f} ms, worst {p99s[-1]:.2f} ms; overruns per booth: "
            f"median {sorted(overruns)[len(overruns) // 2]}, worst {max(overruns)}"
        )
    print(
        f"  load: {r['cpu_cores']:.2f} cores for the whole fleet "
        f"({r['sup_cpu_pct_each']:.1f} % of a core per supervisor), RSS {r['rss_mb']:.0f} MB "
        f"in all; states at the end: {sorted(set(map(str, r['states'])))}"
    )
    return 0 if r["unanswered"] == 0 and r["reset_ok"] == args.booths and not r["down"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
