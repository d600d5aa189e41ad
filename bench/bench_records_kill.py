"""The record store under kill -9, at length: hundreds of kills of a writer mid-transaction.

    python bench/bench_records_kill.py [--runs 300] [--seed 1]

Each run starts a child that writes records in a loop (single events, three-event transactions,
job starts) and prints the seq of each committed record; after a random number of
acknowledgements the child is killed with SIGKILL. After each kill the store is opened again:
``PRAGMA integrity_check`` must be ``ok``, no acknowledged record may be missing and ``seq`` must
have no gap. The test suite runs the same loop ten times.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

# First: puts the repository on the import path for the packages below.
import _repo  # noqa: F401

from tests.booth_ctl.test_records_kill import kill_loop


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.monotonic()
        acked = kill_loop(Path(tmp) / "records.sqlite3", args.runs, random.Random(args.seed))
        dt = time.monotonic() - t0
    print(
        f"{args.runs} kill -9 runs in {dt:.1f} s: {acked} records acknowledged, none lost, "
        "integrity_check ok after every kill, seq without gaps"
    )


if __name__ == "__main__":
    main()
