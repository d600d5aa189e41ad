"""kill -9 while records are written: nothing acknowledged is lost and the database stays sound."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
from pathlib import Path

from booth_ctl.records import RecordStore
from tests._util import ROOT

RUNS = 10
READ_TIMEOUT_S = 20.0


def kill_loop(path: Path, runs: int, rng: random.Random) -> int:
    """Start the writer, let it acknowledge a random number of records, SIGKILL it; repeat.

    Returns the highest acknowledged seq; asserts every acknowledged record survived.
    """
    acked = 0
    for _ in range(runs):
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.booth_ctl._store_child", str(path)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )
        assert proc.stdout is not None
        try:
            want = rng.randint(1, 60)
            for _ in range(want):
                line = proc.stdout.readline()
                assert line, f"writer exited early with {proc.poll()}"
                seq = int(line)
                assert seq > acked, f"seq went from {acked} to {seq}"
                acked = seq
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=READ_TIMEOUT_S)
            # Lines printed after our last read were acknowledged too.
            for line in proc.stdout.read().splitlines():
                acked = max(acked, int(line))
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=READ_TIMEOUT_S)
            proc.stdout.close()
        with RecordStore(path) as store:
            assert store.pragma("integrity_check") == "ok"
            last = store.last_seq()
            assert last >= acked, f"acknowledged seq {acked} lost (store has {last})"
            seqs = [e["seq"] for e in store.events(limit=1_000_000)]
            assert seqs == list(range(1, last + 1)), "seq has a gap"
    return acked


def test_kill_9_loses_no_acknowledged_record(tmp_path: Path) -> None:
    path = tmp_path / "records.sqlite3"
    acked = kill_loop(path, RUNS, random.Random(4))
    assert acked > RUNS
    with RecordStore(path) as store:
        # Every job a kill cut short is recorded aborted at the next start.
        store.mark_aborted_jobs_at_start()
        assert store.pragma("integrity_check") == "ok"
