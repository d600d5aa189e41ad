"""``make demo`` as a user runs it: the whole booth as processes, driven over MQTT."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests._util import ROOT

pytestmark = [pytest.mark.process, pytest.mark.timeout(180)]

DEMO_TIMEOUT_S = 150
STOP_TIMEOUT_S = 30


def _demo(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "devkit.demo", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def _processes_naming(text: str) -> list[str]:
    """Command lines of live processes that mention ``text`` (the demo's work folder)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if text in cmdline and ") Z" not in stat:
            found.append(cmdline)
    return found


def test_the_demo_runs_a_job_and_prints_its_summary() -> None:
    proc = _demo("--units", "1")
    out, err = proc.communicate(timeout=DEMO_TIMEOUT_S)
    assert proc.returncode == 0, out[-3000:] + err[-3000:]
    assert "supervisor online; reset" in out
    assert re.search(r"\[\s*execute\] unit 1 of 1\s+step dip_enter", out), out[-3000:]
    assert "job completed" in out
    assert re.search(r"^lot DEMO-\S+\s+recipe demo\s+outcome completed", out, re.M), out[-2000:]
    row = re.search(r"^\s+1\s+completed\s+solder1\s+(\d+\.\d)\s+(\d+\.\d)", out, re.M)
    assert row is not None, out[-2000:]
    o2_ppm, temp_c = float(row.group(1)), float(row.group(2))
    assert o2_ppm <= 1000.0 and 240.0 <= temp_c <= 260.0
    assert "units done: 1 of 1" in out
    assert "simulator's record: 1 bath entries, 1 parts loaded, 1 unloaded, 0 dropped" in out
    assert out.rstrip().endswith("stopped broker, booth-sim and supervisor")


def test_a_terminated_demo_stops_everything_it_started_and_fails() -> None:
    proc = _demo("--units", "3")
    assert proc.stdout is not None
    first = proc.stdout.readline()
    match = re.search(r"logs in (\S+)\)", first)
    assert match, first
    workdir = match.group(1)
    deadline = time.monotonic() + DEMO_TIMEOUT_S
    for line in proc.stdout:
        if "idle; start_job" in line or time.monotonic() > deadline:
            break
    assert len(_processes_naming(workdir)) >= 2, "booth-sim and the supervisor should be running"
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=STOP_TIMEOUT_S)
    assert proc.returncode == 1, out[-2000:] + err[-2000:]
    assert "interrupted: everything started was stopped" in err
    assert _processes_naming(workdir) == []
