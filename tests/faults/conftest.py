"""The fault matrix's booth: one simulated booth and supervisor shared by a module's cases.

Starting the booth and bringing it to ``idle`` costs seconds; each case returns it to ``idle``
itself (faults cleared, aborted jobs cleared, reset), so a module shares one. The suite's leak
guards count per test; the shared booth legitimately opens and closes sockets across tests (a
device taken offline and back is reconnected), so for the tests that use it the guards are held
over the whole module instead: everything it opened is closed and every task it started is
finished once it has stopped.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests._guards import cancel_leaked_tasks, guard_fds

from ._rig import Rig, fault_config


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def rig(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Rig]:
    tmp: Path = tmp_path_factory.mktemp("faults")
    fds = guard_fds("the booth")
    next(fds)
    async with Rig(fault_config(tmp)) as booth:
        yield booth
    cancel_leaked_tasks("the booth")
    next(fds, None)


@pytest.fixture(autouse=True)
def _no_leaked_fds(request: pytest.FixtureRequest) -> Iterator[None]:
    """The suite's guard, for the tests that do not share the booth (the ``rig`` checks itself)."""
    if "rig" in request.fixturenames:
        yield
        return
    yield from guard_fds()
