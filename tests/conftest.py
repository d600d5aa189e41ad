"""Suite-wide guards: a test that leaks asyncio tasks or file descriptors fails."""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import Iterator

import pytest


def _open_fds() -> set[int]:
    return {int(fd) for fd in os.listdir("/proc/self/fd")}


@pytest.fixture(autouse=True)
def _no_leaked_fds() -> Iterator[None]:
    """Sockets, ptys and files opened by a test are closed by the time it ends.

    Session- and module-scoped fixtures (the broker) are set up before this runs, so what they
    hold is not counted.
    """
    gc.collect()
    before = _open_fds()
    yield
    gc.collect()
    leaked = {}
    for fd in _open_fds() - before:
        try:
            leaked[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # closed between the listing and the readlink
    assert not leaked, f"test leaked file descriptors: {leaked}"


@pytest.fixture(autouse=True)
async def _no_leaked_tasks() -> None:
    """Every task a test starts is cancelled and awaited before the test ends."""
    yield  # type: ignore[misc]
    current = asyncio.current_task()
    leaked = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    for t in leaked:
        t.cancel()
    assert not leaked, f"test leaked tasks: {[t.get_name() for t in leaked]}"
