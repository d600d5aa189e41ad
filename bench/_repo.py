"""The repository root, put on the import path: a benchmark runs as ``python bench/NAME.py``,
which puts only ``bench/`` there, and it imports ``devkit`` and ``tests`` (not installed).

Imported before any of those (``_harness`` imports it first)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
