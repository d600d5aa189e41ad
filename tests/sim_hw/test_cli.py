"""``booth-sim`` as a process: serve, ``state``, ``fault``, clean shutdown, one-line errors."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests._util import render_config, wait_for

from .conftest import config_data

pytestmark = [pytest.mark.timeout(60), pytest.mark.process]

BOOTH_SIM = str(Path(sys.executable).with_name("booth-sim"))


async def run(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        BOOTH_SIM, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(20):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
async def booth_sim(tmp_path: Path) -> AsyncIterator[tuple[Path, asyncio.subprocess.Process]]:
    config = render_config(tmp_path)
    log = (tmp_path / "booth-sim.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        BOOTH_SIM, "--config", str(config), stdout=log, stderr=log
    )
    try:

        async def ready() -> bool:
            assert proc.returncode is None, (tmp_path / "booth-sim.log").read_text()
            return (await run("state", "--config", str(config)))[0] == 0

        await wait_for(ready, timeout_s=20, what="booth-sim answering", interval_s=0.1)
        yield config, proc
    finally:
        if proc.returncode is None:
            proc.kill()
        async with asyncio.timeout(10):
            await proc.wait()
        log.close()


async def state(config: Path) -> dict[str, Any]:
    code, out, err = await run("state", "--config", str(config))
    assert code == 0, err
    result: dict[str, Any] = json.loads(out)
    return result


async def test_state_and_faults_through_the_cli(booth_sim: tuple[Path, Any]) -> None:
    config, _ = booth_sim
    st = await state(config)
    assert st["door_closed"] and st["faults"] == [] and st["bath_entries"] == []
    assert 240 < st["solder_temp_c"] < 255  # molten, near the setpoint
    assert st["o2_ppm"] < 1000  # part-purged

    code, out, _ = await run("fault", "door_open", "--config", str(config))
    assert code == 0 and json.loads(out) == {"faults": ["door_open"]}
    code, out, _ = await run("fault", "o2_leak", "--value", "3000", "--config", str(config))
    assert code == 0 and json.loads(out) == {"faults": ["door_open", "o2_leak"]}
    st = await state(config)
    assert not st["door_closed"] and st["o2_ppm"] == 3000 and st["fault_values"]["o2_leak"] == 3000

    code, out, _ = await run("fault", "--clear", "door_open", "--config", str(config))
    assert code == 0 and json.loads(out) == {"faults": ["o2_leak"]}
    code, out, _ = await run("fault", "--clear", "--config", str(config))
    assert code == 0 and json.loads(out) == {"faults": []}
    assert (await state(config))["door_closed"]


async def test_bad_fault_commands_fail_with_one_line(booth_sim: tuple[Path, Any]) -> None:
    config, _ = booth_sim
    code, out, err = await run("fault", "smoke", "--config", str(config))
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith("booth-sim: unknown fault 'smoke'")
    code, _, err = await run("fault", "device_offline", "--config", str(config))
    assert code == 1 and "needs --value DEVICE" in err
    code, _, err = await run("fault", "--config", str(config))
    assert code == 2 and "give a NAME" in err


async def test_sigterm_stops_cleanly_and_removes_links_and_socket(
    booth_sim: tuple[Path, asyncio.subprocess.Process],
) -> None:
    config, proc = booth_sim
    data = config_data(config)
    paths = [
        data["devices"]["heater1"]["transport"]["port"],
        data["devices"]["o2"]["transport"]["port"],
        data["sim"]["control_socket"],
    ]
    assert all(lexists(p) for p in paths)
    proc.send_signal(signal.SIGTERM)
    async with asyncio.timeout(10):
        assert await proc.wait() == 0
    assert not any(lexists(p) for p in paths)


async def test_a_second_booth_sim_is_refused(booth_sim: tuple[Path, Any]) -> None:
    config, _ = booth_sim
    code, _, err = await run("--config", str(config))
    assert code == 1
    assert err.strip().endswith(
        f"a simulator is already running at {config_data(config)['sim']['control_socket']}"
    )
    assert (await state(config))["faults"] == []


async def test_state_without_a_simulator_is_one_clear_line(tmp_path: Path) -> None:
    config = render_config(tmp_path)
    code, out, err = await run("state", "--config", str(config))
    sock = config_data(config)["sim"]["control_socket"]
    assert (code, out, err) == (1, "", f"booth-sim: simulator not running at {sock}\n")


async def test_a_bad_config_is_one_clear_line(tmp_path: Path) -> None:
    config = render_config(tmp_path, overrides=lambda d: d["sim"].update(o2_t90_ms=-1))
    code, _, err = await run("--config", str(config))
    assert code == 1
    assert err.count("\n") == 1 and "sim.o2_t90_ms" in err


def lexists(path: str) -> bool:
    return os.path.lexists(path)
