"""Ending a child process of the dev kit (the supervisor, the simulator, Mosquitto) the same way
everywhere: a signal, a bounded wait, then SIGKILL if it did not go."""

from __future__ import annotations

import signal
import subprocess


def stop_process(proc: subprocess.Popen[bytes], *, kill: bool, timeout_s: float) -> None:
    """SIGTERM (SIGKILL if `kill`) a process still running, wait up to `timeout_s`, then kill it."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout_s)
