"""``make bench``: every benchmark of this folder, one after the other; their figures printed and
written to ``docs/performance.md`` with the machine they ran on.

    python bench/run_all.py [--quick] [--only NAME ...] [--skip NAME ...] [--out PATH]

Each script is run as its own process with the arguments below (full, or ``--quick`` for a
short run of a few minutes); its output is the figures. A script found in this folder but not
listed here is run with its defaults (and ``--quick`` when it offers that option). With
``--only``, the other scripts' sections of an existing report are kept as they were.
"""

from __future__ import annotations

import argparse
import datetime
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from _harness import machine
from _repo import ROOT

BENCH = Path(__file__).resolve().parent
REPORT = ROOT / "docs" / "performance.md"

#: script: (what it measures, full arguments, quick arguments). Run in this order.
PLAN: dict[str, tuple[str, list[str], list[str]]] = {
    "bench_drivers": ("Device poll rates and latency", [], ["--seconds", "2"]),
    "bench_mqtt": (
        "MES link: command round trip, event throughput",
        [],
        ["--requests", "200", "--events", "2000"],
    ),
    "bench_records_kill": ("Record store under kill -9", [], ["--runs", "20"]),
    "bench_scan": (
        "Scan lateness during a job, idle CPU, RSS",
        [],
        ["--seconds", "20", "--idle-seconds", "5"],
    ),
    # The full run also writes docs/safety.md (its own table); a quick one only prints.
    "fault_matrix": (
        "Reaction times per fault",
        [],
        ["--no-write", "--phases", "solder", "--no-process"],
    ),
    # The same matrix on the booth of vendor devices (an Omron E5CC, a WAGO 750-352): printed
    # here only, docs/safety.md stays the shipped booth's.
    "fault_matrix_vendor": (
        "Reaction times per fault, vendor booth (config/booth-sim-vendor.toml)",
        ["--config", "booth-sim-vendor.toml", "--no-write"],
        ["--config", "booth-sim-vendor.toml", "--no-write", "--phases", "solder", "--no-process"],
    ),
    "bench_stateful": (
        "Safety rules as properties, run long; fuzz scaled up",
        [],
        ["--examples", "100", "--sim-examples", "10", "--fuzz-scale", "1"],
    ),
    "soak": (
        "Soak: jobs, broker restarts, supervisor kill -9",
        [],
        ["--minutes", "2", "--restart-every-s", "30", "--kill-every-s", "50", "--warmup-s", "20"],
    ),
    "fleet": ("Fleet: booths on one broker, MES round trip", [], ["--booths", "5"]),
    "bench_line": (
        "Shared RS-485 line: poll round vs wire time, heater off after tc_open, idle CPU",
        [],
        ["--rounds", "50", "--tries", "4", "--idle-seconds", "5"],
    ),
}
#: Sections that run a script of this folder with other arguments: section -> script.
VARIANTS = {"fault_matrix_vendor": "fault_matrix"}
#: No script runs longer than this (the soak's 10 minutes plus its start and drain fit).
SCRIPT_TIMEOUT_S = 3 * 3600
QUICK_TIMEOUT_S = 20 * 60


@dataclass
class Result:
    name: str
    title: str
    argv: list[str]
    rc: int | None
    seconds: float
    output: str


def scripts() -> list[str]:
    found = sorted(
        p.stem for p in BENCH.glob("*.py") if not p.stem.startswith("_") and p.stem != "run_all"
    )
    found += [v for v, script in VARIANTS.items() if script in found]
    return [n for n in PLAN if n in found] + [n for n in found if n not in PLAN]


def offers_quick(name: str) -> bool:
    proc = subprocess.run(
        [sys.executable, str(BENCH / f"{name}.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return "--quick" in proc.stdout


def run(name: str, quick: bool) -> Result:
    title, full, short = PLAN.get(name, (name.replace("_", " "), [], []))
    args = short if quick else full
    if quick and name not in PLAN and offers_quick(name):
        args = ["--quick"]
    script = VARIANTS.get(name, name)
    argv = [sys.executable, str(BENCH / f"{script}.py"), *args]
    shown = ["python", f"bench/{script}.py", *args]
    print(f"\n=== {' '.join(shown)}", flush=True)
    t0 = time.monotonic()
    out: list[str] = []
    rc: int | None
    with subprocess.Popen(
        argv,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    ) as proc:
        assert proc.stdout is not None
        deadline = t0 + (QUICK_TIMEOUT_S if quick else SCRIPT_TIMEOUT_S)
        for line in proc.stdout:
            print(line, end="", flush=True)
            out.append(line)
            if time.monotonic() > deadline:
                break
        try:
            rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            rc = None
            out.append("(stopped: ran past its time limit)\n")
    return Result(name, title, shown, rc, time.monotonic() - t0, "".join(out))


def section(r: Result) -> str:
    status = "ok" if r.rc == 0 else ("timed out" if r.rc is None else f"exit status {r.rc}")
    return (
        f"<!-- bench:{r.name} -->\n"
        f"## {r.title}\n\n"
        f"`{' '.join(r.argv)}` ({r.seconds:.0f} s, {status})\n\n"
        f"```\n{r.output.rstrip()}\n```\n"
        f"<!-- /bench:{r.name} -->\n"
    )


def write_report(path: Path, results: list[Result], quick: bool) -> None:
    m = machine()
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    sections = dict(re.findall(r"<!-- bench:(\w+) -->\n(.*?)<!-- /bench:\1 -->\n", old, re.S))
    sections = {k: f"<!-- bench:{k} -->\n{v}<!-- /bench:{k} -->\n" for k, v in sections.items()}
    for r in results:
        sections[r.name] = section(r)
    order = scripts()
    body = [sections[n] for n in order if n in sections]
    body += [v for k, v in sections.items() if k not in order]
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    head = (
        "# Performance\n\n"
        "Figures of the benchmarks in `bench/`, written by `make bench` "
        "(`python bench/run_all.py`; `--quick` for a short run). Shared machines are noisy: "
        "compare ratios within one run, and see `bench/README.md` for what each figure means.\n\n"
        f"Last run: {when}, {'quick' if quick else 'full'}"
        f"{' (only ' + ', '.join(r.name for r in results) + ')' if results else ''}.\n\n"
        "| machine | |\n|---|---|\n"
        f"| CPU | {m['cpu']} |\n| cores | {m['cores']} |\n| Python | {m['python']} |\n"
        f"| system | {m['system']} |\n\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(head + "\n".join(body), encoding="utf-8")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a short run of every script")
    ap.add_argument("--only", nargs="+", default=None, help="run these scripts only")
    ap.add_argument("--skip", nargs="+", default=[], help="do not run these scripts")
    ap.add_argument("--out", type=Path, default=REPORT)
    args = ap.parse_args()
    names = [n for n in scripts() if (args.only is None or n in args.only) and n not in args.skip]
    unknown = set(args.only or []) - set(scripts())
    if unknown:
        ap.error(f"no such bench script: {', '.join(sorted(unknown))}")
    m = machine()
    print(f"machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}, {m['system']}")
    results = []
    for n in names:
        results.append(run(n, args.quick))
        write_report(args.out, results, args.quick)  # a report even if a later script hangs
    print(f"\nwritten: {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    failed = [r.name for r in results if r.rc != 0]
    if failed:
        print(f"not met or failed: {', '.join(failed)}")
    return 0 if not failed else 1


if __name__ == "__main__":
    raise SystemExit(main())
