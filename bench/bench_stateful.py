"""The safety rules as properties, run long: the hypothesis state machines of the test suite
with thousands of examples, and the bad-input fuzz tests scaled up.

    python bench/bench_stateful.py [--examples 2000] [--sim-examples 1000] [--fuzz-scale 10]

``make test`` runs the same tests short. Here:

- ``tests/booth_ctl/test_stateful.py``: random commands, faults and clears against the
  controller and the booth's physics on a virtual clock, the safety rules checked after every
  step (``BOOTH_STATEFUL_EXAMPLES`` sequences);
- ``tests/booth_ctl/test_stateful_sim.py``: the same over the simulator's physics, with
  supervisor crashes and restarts, each rule judged from the physics' truth (``booth-sim
  state``) after every scan (``BOOTH_STATEFUL_SIM_EXAMPLES`` sequences);
- ``tests/fuzz``: bad MES commands, driver replies, config and recipe files (and the parsers'
  limits), ``BOOTH_FUZZ_SCALE`` times the examples of ``make test``.

Prints examples run, time and outcome per part; exits 0 when every part passes.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: The suite's per-test timeout is for short runs; a long run has its own bound.
RUN_TIMEOUT_S = 4 * 3600


def run(label: str, targets: list[str], env: dict[str, str], examples: str) -> bool:
    argv = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-o",
        f"timeout={RUN_TIMEOUT_S}",
        *targets,
    ]
    t0 = time.monotonic()
    proc = subprocess.run(
        argv,
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S + 60,
        check=False,
    )
    dt = time.monotonic() - t0
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    summary = lines[-1] if lines else "(no output)"
    ok = proc.returncode == 0
    print(f"{label}: {examples} in {dt:.0f} s: {'passed' if ok else 'FAILED'} ({summary})")
    if not ok:
        print(proc.stdout[-6000:])
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=2000, help="controller state machine")
    ap.add_argument("--sim-examples", type=int, default=1000, help="simulator state machine")
    ap.add_argument("--fuzz-scale", type=int, default=10, help="x the fuzz tests' examples")
    args = ap.parse_args()
    results = [
        run(
            "stateful (controller + physics, 30 steps each)",
            ["tests/booth_ctl/test_stateful.py"],
            {"BOOTH_STATEFUL_EXAMPLES": str(args.examples)},
            f"{args.examples} sequences",
        ),
        run(
            "stateful over the simulator (30 steps each)",
            ["tests/booth_ctl/test_stateful_sim.py"],
            {"BOOTH_STATEFUL_SIM_EXAMPLES": str(args.sim_examples)},
            f"{args.sim_examples} sequences",
        ),
        run(
            "bad input fuzz",
            ["tests/fuzz"],
            {"BOOTH_FUZZ_SCALE": str(args.fuzz_scale)},
            f"{args.fuzz_scale}x the examples of make test",
        ),
    ]
    return 0 if all(results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
