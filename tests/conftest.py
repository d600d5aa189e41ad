"""Suite-wide guards: a test that leaks asyncio tasks or file descriptors fails."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ._guards import cancel_leaked_tasks, guard_fds


@pytest.fixture(autouse=True)
def _no_leaked_fds() -> Iterator[None]:
    """Sockets, ptys and files opened by a test are closed by the time it ends.

    Session- and module-scoped fixtures (the broker) are set up before this runs, so what they
    hold is not counted.
    """
    yield from guard_fds()


@pytest.fixture(autouse=True)
async def _no_leaked_tasks() -> None:
    """Every task a test starts is cancelled and awaited before the test ends."""
    yield  # type: ignore[misc]
    cancel_leaked_tasks()
