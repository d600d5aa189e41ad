"""Leak checks shared by the suite's autouse guards and the fault matrix's module-wide booth."""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import Iterator


def open_fds() -> set[int]:
    return {int(fd) for fd in os.listdir("/proc/self/fd")}


def guard_fds(what: str = "test") -> Iterator[None]:
    """Yield once; then fail if a descriptor opened meanwhile is still open, naming its target."""
    gc.collect()
    before = open_fds()
    yield
    gc.collect()
    leaked = {}
    for fd in open_fds() - before:
        try:
            leaked[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # closed between the listing and the readlink
    assert not leaked, f"{what} leaked file descriptors: {leaked}"


def cancel_leaked_tasks(what: str = "test") -> None:
    """Fail if a task other than the current one still runs (cancelling it, so it cannot linger)."""
    current = asyncio.current_task()
    leaked = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    for t in leaked:
        t.cancel()
    assert not leaked, f"{what} leaked tasks: {[t.get_name() for t in leaked]}"
