"""How many examples the fuzz tests draw: short in ``make test``; ``BOOTH_FUZZ_SCALE=N`` runs N
times as many (``bench/bench_stateful.py --fuzz`` runs them long)."""

from __future__ import annotations

import os


def examples(n: int) -> int:
    return n * max(1, int(os.environ.get("BOOTH_FUZZ_SCALE", "1")))
