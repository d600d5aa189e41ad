"""The soak: jobs back to back for minutes, with the broker restarted every minute and the
supervisor killed (SIGKILL) every few minutes, against the simulated booth.

    python bench/soak.py [--minutes 10] [--restart-every-s 60] [--kill-every-s 180]
                         [--warmup-s 75] [--units 3]

Everything runs as real processes on loopback: a Mosquitto with persistence, ``booth-sim`` and
``boothctl run``; the MES is an MQTT client with a persistent session that follows status,
telemetry and events across every restart. Checked at the end, and printed:

- events: every ``seq`` from the first to the last one stored arrived, and each new one arrived
  right after its predecessor (0 lost, 0 reordered; redeliveries after an outage are counted as
  duplicates, which at-least-once delivery allows);
- safety: every entry of a part into the solder in the simulator's own record
  (``bath_entries``) had O2 within the recipe's limit and the solder within its band;
- memory: the supervisor's RSS growth from the end of its warm-up to the end of its life, for
  each run of it long enough (goal <= 5 MB);
- scan: the telemetry's lateness p99 and overruns (over its last minute), from the telemetry
  sent once a run of the supervisor is past its warm-up (goal p99 <= 1 ms, 0 overruns).

Exits 0 when every goal is met.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sqlite3
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _harness import JobCounts, Watch, rss_mb, run_jobs, with_broker_and_sim
from _repo import ROOT

from devkit.booth import BoothStack
from devkit.broker import Broker

UP_TIMEOUT_S = 60.0
DRAIN_TIMEOUT_S = 60.0
SAMPLE_EVERY_S = 5.0
RSS_GROWTH_MAX_MB = 5.0
LATE_P99_MAX_MS = 1.0


@dataclass
class Run:
    """One life of the supervisor process."""

    pid: int
    started: float
    rss: list[tuple[float, float]] = field(default_factory=list)  # (age s, MB)


@dataclass
class Soak:
    stack: BoothStack
    args: argparse.Namespace
    runs: list[Run] = field(default_factory=list)
    broker_restarts: int = 0
    kills: int = 0
    done: bool = False

    def start_supervisor(self) -> None:
        self.stack.start_supervisor()
        assert self.stack.supervisor.proc is not None
        self.runs.append(Run(self.stack.supervisor.proc.pid, time.monotonic()))

    async def chaos(self, t0: float, end: float) -> None:
        a = self.args
        next_restart = t0 + a.restart_every_s
        # Kills fall between broker restarts, not on them.
        next_kill = t0 + a.kill_every_s + a.restart_every_s / 2
        next_sample = t0
        while time.monotonic() < end:
            now = time.monotonic()
            if now >= next_restart:
                await asyncio.to_thread(self.stack.broker.stop)
                await asyncio.to_thread(self.stack.broker.start)
                self.broker_restarts += 1
                next_restart += a.restart_every_s
            if now >= next_kill:
                await asyncio.to_thread(self.stack.supervisor.stop, kill=True)
                self.kills += 1
                self.start_supervisor()
                next_kill += a.kill_every_s
            if now >= next_sample:
                run = self.runs[-1]
                with contextlib.suppress(OSError):
                    run.rss.append((now - run.started, rss_mb(run.pid)))
                next_sample += SAMPLE_EVERY_S
            await asyncio.sleep(0.2)
        self.done = True


def stored_events(path: Path) -> tuple[int, int]:
    """(highest seq, undelivered) in the booth's record store."""
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as db:
        top = db.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]
        pending = db.execute("SELECT COUNT(*) FROM events WHERE delivered = 0").fetchone()[0]
    return int(top), int(pending)


def check_events(seqs: list[int], top: int) -> dict[str, Any]:
    seen: set[int] = set()
    reordered = duplicates = 0
    high = 0
    for s in seqs:
        if s in seen:
            duplicates += 1
            continue
        if high and s != high + 1:
            reordered += 1
        seen.add(s)
        high = max(high, s)
    first = min(seen) if seen else 0
    lost = sorted(set(range(1, top + 1)) - seen)
    return {
        "received": len(seqs),
        "unique": len(seen),
        "first": first,
        "last_stored": top,
        "lost": len(lost),
        "lost_examples": lost[:10],
        "reordered": reordered,
        "duplicates": duplicates,
    }


def check_safety(truth: dict[str, Any], recipe: dict[str, Any]) -> dict[str, Any]:
    limit = float(recipe["o2_limit_ppm"])
    bands = {d["vessel"]: (float(d["setpoint_c"]), float(d["band_c"])) for d in recipe["dips"]}
    entries = truth.get("bath_entries", [])
    bad = []
    for e in entries:
        sp, band = bands.get(e["vessel"], (float("nan"), 0.0))
        if not (e["o2_ppm"] <= limit and abs(e["solder_temp_c"] - sp) <= band):
            bad.append(e)
    return {
        "bath_entries": len(entries),
        "violations": len(bad),
        "violation_examples": bad[:5],
        "o2_max_ppm": max((e["o2_ppm"] for e in entries), default=None),
        "temp_min_c": min((e["solder_temp_c"] for e in entries), default=None),
        "temp_max_c": max((e["solder_temp_c"] for e in entries), default=None),
        "o2_limit_ppm": limit,
        "bands": bands,
        "parts_dropped": truth.get("parts_dropped"),
    }


def check_rss(runs: list[Run], warmup_s: float) -> dict[str, Any]:
    growths = []
    for r in runs:
        after = [mb for age, mb in r.rss if age >= warmup_s]
        if len(after) >= 2:
            growths.append((after[-1] - after[0], after[0], after[-1], r.rss[-1][0]))
    worst = max(growths, default=None)
    return {
        "runs_measured": len(growths),
        "runs": len(runs),
        "growth_max_mb": worst[0] if worst else None,
        "worst": worst,
        "rss_last_mb": runs[-1].rss[-1][1] if runs and runs[-1].rss else None,
    }


def check_scan(watch: Watch, runs: list[Run], warmup_s: float) -> dict[str, Any]:
    starts = [r.started for r in runs]

    def age(t: float) -> float:
        before = [s for s in starts if s <= t]
        return t - max(before) if before else -1.0

    all_p99 = [tm["scan"]["late_p99_ms"] for _, tm in watch.telemetry if "scan" in tm]
    warm = [tm["scan"] for t, tm in watch.telemetry if "scan" in tm and age(t) >= warmup_s]
    return {
        "telemetry": len(all_p99),
        "telemetry_after_warmup": len(warm),
        "late_p99_max_ms": max((s["late_p99_ms"] for s in warm), default=None),
        "late_p99_median_ms": sorted(s["late_p99_ms"] for s in warm)[len(warm) // 2]
        if warm
        else None,
        "late_max_ms": max((s["late_max_ms"] for s in warm), default=None),
        "overruns_max": max((s["overruns"] for s in warm), default=None),
        "late_p99_max_all_ms": max(all_p99, default=None),
    }


async def soak(stack: BoothStack, args: argparse.Namespace) -> dict[str, Any]:
    s = Soak(stack, args)
    async with Watch(stack.mqtt_host, stack.mqtt_port, stack.booth_id, persistent=True) as watch:
        s.start_supervisor()
        await watch.wait(watch.devices_up, UP_TIMEOUT_S, "the supervisor and its devices")
        t0 = time.monotonic()
        end = t0 + args.minutes * 60.0
        chaos = asyncio.create_task(s.chaos(t0, end), name="chaos")
        try:
            counts: JobCounts = await run_jobs(watch, lambda: s.done, units=args.units)
        finally:
            await chaos
        # Let the outbox drain to the MES.
        records = Path(stack.data["records"]["path"])
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while True:
            top, pending = stored_events(records)
            if (pending == 0 and top in watch.seqs) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        elapsed = time.monotonic() - t0
        truth = stack.sim_state()
        recipe = tomllib.loads((ROOT / "config" / "recipes" / "demo.toml").read_text())
        return {
            "elapsed_s": elapsed,
            "jobs": counts,
            "broker_restarts": s.broker_restarts,
            "kills": s.kills,
            "mes_connections": watch.connections,
            "events": check_events(watch.seqs, top),
            "undelivered_at_end": pending,
            "safety": check_safety(truth, recipe),
            "rss": check_rss(s.runs, args.warmup_s),
            "scan": check_scan(watch, s.runs, args.warmup_s),
        }


def report(r: dict[str, Any], args: argparse.Namespace) -> bool:
    ev, sa, rss, sc, jobs = r["events"], r["safety"], r["rss"], r["scan"], r["jobs"]
    print(
        f"soak: {r['elapsed_s'] / 60:.1f} min; {r['broker_restarts']} broker restarts, "
        f"{r['kills']} supervisor kill -9; MES (re)connections {r['mes_connections']}"
    )
    print(
        f"  jobs: {jobs.started} started, {jobs.completed} completed, {jobs.aborted} aborted "
        f"(by the kills); commands refused {jobs.refused}, unanswered {jobs.unanswered} "
        "(sent while the broker was away)"
    )
    print(
        f"  events: seq {ev['first']}..{ev['last_stored']} stored; {ev['unique']} received "
        f"({ev['duplicates']} duplicates); lost {ev['lost']} {ev['lost_examples'] or ''}, "
        f"reordered {ev['reordered']}; undelivered at the end {r['undelivered_at_end']}"
    )
    print(
        f"  safety: {sa['bath_entries']} bath entries, {sa['violations']} outside the recipe "
        f"(O2 <= {sa['o2_limit_ppm']:g} ppm, solder {sa['bands']}); O2 max {sa['o2_max_ppm']} "
        f"ppm, solder {sa['temp_min_c']}..{sa['temp_max_c']} C; parts dropped "
        f"{sa['parts_dropped']}"
    )
    for v in sa["violation_examples"]:
        print(f"    violation: {v}")
    growth = rss["growth_max_mb"]
    print(
        f"  memory: RSS growth after {args.warmup_s:g} s warm-up, worst of "
        f"{rss['runs_measured']} of {rss['runs']} supervisor runs: "
        + ("n/a (no run lived past its warm-up)" if growth is None else f"{growth:+.2f} MB")
        + (f" ({rss['worst'][1]:.1f} -> {rss['worst'][2]:.1f} MB)" if rss["worst"] else "")
    )
    print(
        f"  scan (telemetry past warm-up: {sc['telemetry_after_warmup']} of {sc['telemetry']}): "
        f"late p99 worst {sc['late_p99_max_ms']} ms, median {sc['late_p99_median_ms']} ms; "
        f"late max {sc['late_max_ms']} ms; overruns per minute worst {sc['overruns_max']}; "
        f"(p99 worst including warm-ups: {sc['late_p99_max_all_ms']} ms)"
    )
    goals = {
        "0 events lost": ev["lost"] == 0 and r["undelivered_at_end"] == 0,
        "0 events reordered": ev["reordered"] == 0,
        "0 safety violations": sa["violations"] == 0 and sa["bath_entries"] > 0,
        "RSS growth <= 5 MB": growth is not None and growth <= RSS_GROWTH_MAX_MB,
        "scan p99 <= 1 ms": sc["late_p99_max_ms"] is not None
        and sc["late_p99_max_ms"] <= LATE_P99_MAX_MS,
        "0 overruns": sc["overruns_max"] == 0,
    }
    print("  goals: " + ", ".join(f"{k}: {'met' if v else 'NOT met'}" for k, v in goals.items()))
    return all(goals.values())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--restart-every-s", type=float, default=60.0, help="broker restarts")
    ap.add_argument("--kill-every-s", type=float, default=180.0, help="supervisor kill -9")
    ap.add_argument("--warmup-s", type=float, default=75.0, help="after each supervisor start")
    ap.add_argument("--units", type=int, default=3, help="units per job")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        work = Path(tmp)
        stack = BoothStack(work)
        stack.broker = Broker(work / "broker-p", port=stack.mqtt_port, persistent=True)
        result = with_broker_and_sim(stack, lambda: soak(stack, args))
    return 0 if report(result, args) else 1


if __name__ == "__main__":
    raise SystemExit(main())
