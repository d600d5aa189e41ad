"""``boothctl send``, ``status``, ``watch`` and ``mode`` against a whole booth (broker, booth-sim,
``boothctl run``), as processes, exactly as the MES and an operator use them."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from devkit.booth import BoothStack
from tests._util import render_config, wait_for

pytestmark = [pytest.mark.timeout(90), pytest.mark.process]

BOOTHCTL = str(Path(sys.executable).with_name("boothctl"))
RUN_TIMEOUT_S = 30


async def boothctl(*args: str, config: Path | None = None) -> tuple[int, str, str]:
    env = {**os.environ}
    if config is not None:
        env["BOOTH_CONFIG"] = str(config)  # the default --config, as on the booth PC
    proc = await asyncio.create_subprocess_exec(
        BOOTHCTL,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    async with asyncio.timeout(RUN_TIMEOUT_S):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BoothStack]:
    with BoothStack(tmp_path_factory.mktemp("cli")) as s:
        yield s


@pytest.fixture
async def booth(stack: BoothStack) -> BoothStack:
    """The stack, once the supervisor is online.

    (Not every permissive: on a starved machine the I/O watchdog may flap, which is the
    watchdog's business, not the CLI's.)
    """

    async def up() -> bool:
        code, out, _ = await boothctl("status", "--timeout", "2", config=stack.config)
        return code == 0 and bool(json.loads(out).get("online"))

    await wait_for(up, timeout_s=30, what="the supervisor online", interval_s=0.2)
    return stack


async def test_status_json_and_pretty(booth: BoothStack) -> None:
    code, out, err = await boothctl("status", config=booth.config)
    assert code == 0, err
    st = json.loads(out)
    assert st["state"] == "stopped"  # after any start: stopped until a reset
    assert st["online"] is True and st["mode"] == "remote"
    assert {"state", "ready", "job", "alarms", "interlocks", "ts"} <= set(st)

    code, out, err = await boothctl("status", "--pretty", "--config", str(booth.config))
    assert code == 0, err
    assert out.splitlines()[0].startswith("state      stopped")
    assert "interlocks" in out and "door_closed" in out
    # Readings come from the next telemetry message (1 Hz).
    temp = next(line for line in out.splitlines() if "solder temperature" in line)
    assert 200 < float(temp.split()[3]) < 300, out
    assert "O2" in out and "e-stop clear" in out


async def test_the_mqtt_tools_need_only_the_booth_toml(booth: BoothStack, tmp_path: Path) -> None:
    """On an office PC there are no register maps: send and status read only the TOML."""
    alone = tmp_path / "booth.toml"
    alone.write_text(booth.config.read_text(encoding="utf-8"), encoding="utf-8")
    for dev in booth.data["devices"].values():
        if "map" in dev:
            assert not (tmp_path / dev["map"]).exists() or Path(dev["map"]).is_absolute()
    text = alone.read_text(encoding="utf-8")
    for dev in booth.data["devices"].values():
        if "map" in dev:
            text = text.replace(str(dev["map"]), "maps/not-here.toml")
    alone.write_text(text, encoding="utf-8")
    code, _, err = await boothctl("config", "check", str(alone))
    assert code == 1 and "not-here.toml" in err  # the maps really are missing
    code, out, err = await boothctl("send", "get_status", config=alone)
    assert code == 0, err
    assert json.loads(out)["ok"] is True
    code, out, err = await boothctl("status", "--pretty", config=alone)
    assert code == 0, err
    assert out.startswith("state ")


async def test_send_exit_codes(booth: BoothStack) -> None:
    code, out, err = await boothctl("send", "get_status", config=booth.config)
    assert code == 0, err
    reply = json.loads(out)
    assert reply["ok"] is True and reply["command"] == "get_status"

    # Refused: exit 1, the reply printed with its contract error code.
    code, out, _ = await boothctl("send", "unhold", config=booth.config)
    assert code == 1
    assert json.loads(out)["error"]["code"] == "invalid_state"
    code, out, _ = await boothctl("send", "frobnicate", config=booth.config)
    assert code == 1
    assert json.loads(out)["error"]["code"] == "unknown_command"
    code, out, _ = await boothctl(
        "send", "start_job", "--json", '{"lot_id": "L1", "units": 0}', config=booth.config
    )
    assert code == 1
    assert json.loads(out)["error"]["code"] == "bad_request"

    # Usage: exit 2, one line on stderr, nothing sent.
    for bad in ("{not json", "[1, 2]"):
        code, out, err = await boothctl("send", "reset", "--json", bad, config=booth.config)
        assert (code, out) == (2, "")
        assert err.startswith("boothctl send: --json") and len(err.strip().splitlines()) == 1


async def test_watch_once_shows_state_permissives_and_readings(booth: BoothStack) -> None:
    code, out, err = await boothctl("watch", "--once", "--color", "never", config=booth.config)
    assert code == 0, err
    assert f"booth {booth.booth_id}" in out and "ONLINE" in out
    assert "state  STOPPED" in out
    assert "door_closed" in out and "o2_ok" in out
    for label in ("solder temperature", "O2", "vacuum"):
        assert label in out
    assert "\x1b[" not in out
    solder = next(line for line in out.splitlines() if "solder temperature" in line)
    assert 200 < float(solder.split()[3]) < 300, solder

    code, out, err = await boothctl("watch", "--once", "--color", "always", config=booth.config)
    assert code == 0, err
    assert "\x1b[32m" in out  # green: something is met (door closed, e-stop clear)


async def test_mode_local_refuses_the_mes_and_shows_in_status(booth: BoothStack) -> None:
    code, out, err = await boothctl("mode", "local", config=booth.config)
    try:
        assert code == 0, err
        assert out.startswith("local")

        async def status_says_local() -> bool:
            code, out, _ = await boothctl("status", config=booth.config)
            return code == 0 and json.loads(out)["mode"] == "local"

        # The supervisor reads the mode from the store every second.
        await wait_for(status_says_local, timeout_s=10, what="status mode local", interval_s=0.2)
        code, out, _ = await boothctl("send", "reset", config=booth.config)
        assert code == 1
        assert json.loads(out)["error"]["details"] == {"mode": "local"}
        code, _, _ = await boothctl("send", "get_status", config=booth.config)
        assert code == 0  # reads are still answered
    finally:
        code, out, err = await boothctl("mode", "remote", config=booth.config)
        assert code == 0 and out.startswith("remote (was local"), err
    code, out, _ = await boothctl("mode", config=booth.config)
    assert out.strip() == "remote"


async def test_no_broker_is_one_line_exit_2(tmp_path: Path) -> None:
    config = render_config(tmp_path)  # a free port: nothing listens there
    for args in (
        ("send", "reset", "--timeout", "1"),
        ("status", "--timeout", "1"),
        ("watch", "--once", "--timeout", "1"),
    ):
        code, out, err = await boothctl(*args, config=config)
        assert code == 2, (args, err)
        assert out == "" and len(err.strip().splitlines()) == 1, (args, err)
        assert err.startswith(f"boothctl {args[0]}: broker 127.0.0.1:"), err
