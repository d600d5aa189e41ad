"""Fixtures of the simulator's tests: private configs, the pure physics, an in-process booth."""

from __future__ import annotations

import tomllib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from sim_hw import BoothPhysics, SimBooth, load_sim_config, sim_config_from_dict
from tests._util import CONFIG_DIR, render_config


def physics_for(
    template: str = "booth-sim.toml",
    edit: Callable[[dict[str, Any]], None] | None = None,
) -> BoothPhysics:
    """Pure physics from a shipped config (optionally edited): no files written, no I/O."""
    path = CONFIG_DIR / template
    if edit is None:
        return BoothPhysics(load_sim_config(path))
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    edit(data)
    return BoothPhysics(sim_config_from_dict(data, path))


def run_until(
    physics: BoothPhysics,
    check: Callable[[], Any],
    *,
    max_s: float,
    what: str,
    dt_s: float = 0.05,
) -> float:
    """Step the physics until ``check()`` is truthy; fail after ``max_s`` of simulated time.

    Returns the simulated time it took. This is ``wait_for`` on the virtual clock.
    """
    start = physics.t_s
    while not check():
        if physics.t_s - start >= max_s:
            raise AssertionError(f"not within {max_s} s of simulated time: {what}")
        physics.step(dt_s)
    return physics.t_s - start


@pytest.fixture
def physics() -> BoothPhysics:
    return physics_for()


@pytest.fixture
def cold() -> BoothPhysics:
    return physics_for("booth-sim-cold.toml")


@pytest.fixture
def sim_config(tmp_path: Path) -> Path:
    return render_config(tmp_path)


@pytest.fixture
async def sim(sim_config: Path) -> AsyncIterator[SimBooth]:
    async with SimBooth(sim_config) as booth:
        yield booth


def config_data(path: Path) -> dict[str, Any]:
    return tomllib.loads(path.read_text(encoding="utf-8"))
