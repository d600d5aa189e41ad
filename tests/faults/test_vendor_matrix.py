"""The fault matrix's one cell that differs on the vendor booth (config/booth-sim-vendor.toml).

Its Omron E5CC has no comm-loss timeout of its own: taken offline, it keeps running. The booth
is allowed only because the contactor path covers it (tests/faults/_cover.py): the supervisor
must open the contactor so the heater is truly unpowered, keep it so while the controller is
deaf, and stop the controller as soon as it answers again. The whole vendor matrix, with the
strict times, is ``bench/fault_matrix.py --config booth-sim-vendor.toml``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from booth_ctl.config._booth import load_config
from tests._guards import cancel_leaked_tasks, guard_fds

from ._cover import GOAL, RESPONSE, uncovered_controller
from ._matrix import required, run_case
from ._rig import Rig, fault_config

pytestmark = [pytest.mark.hil, pytest.mark.timeout(120)]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def rig(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Rig]:
    tmp: Path = tmp_path_factory.mktemp("vendor-faults")
    fds = guard_fds("the vendor booth")
    next(fds)
    async with Rig(fault_config(tmp, template="booth-sim-vendor.toml")) as booth:
        yield booth
    cancel_leaked_tasks("the vendor booth")
    next(fds, None)


def test_only_a_controller_without_comm_loss_gets_the_contactor_goal(tmp_path: Path) -> None:
    generic = load_config(fault_config(tmp_path / "g"))
    vendor = load_config(fault_config(tmp_path / "v", template="booth-sim-vendor.toml"))
    assert not uncovered_controller(generic, "heater1")  # its map has comm_timeout_s
    assert uncovered_controller(vendor, "heater1")  # the E5CC has none
    assert not uncovered_controller(vendor, "io") and not uncovered_controller(vendor, "holder")
    strict, strict_goal = required("device_offline:heater1", "idle")
    assert "heater off by both paths" in strict and "stopped when it answers" not in strict
    assert strict_goal == "contactor open <= 1 s; data stale <= 2 s"
    loose, loose_goal = required("device_offline:heater1", "idle", own_comm_loss=False)
    assert RESPONSE in loose and "stopped when it answers again" in loose
    assert GOAL in loose_goal and "heater unpowered <= 1 s" in loose_goal
    # Other trips are not touched by the flag.
    assert required("estop", "idle", own_comm_loss=False) == required("estop", "idle")


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("phase", ["solder"])
async def test_e5cc_offline_contactor_covers_it_and_it_is_stopped_when_back(
    rig: Rig, phase: str
) -> None:
    out = await run_case(rig, "device_offline:heater1", phase, slow_s=60.0)
    assert out.safe, f"{out.violations} (measured: {out.measured_text()})"
    # Measured from the truth: the heater lost power, and the controller stopped once it
    # answered again (None would mean it never did).
    assert out.measured["heater_unpowered"] is not None
    assert out.measured["stopped_when_back"] is not None
    assert rig.truth()["vessels"]["solder1"]["running"] is False
