"""The control socket: JSON lines, several requests per connection, errors as answers."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import pytest

from sim_hw import SimBooth, SimNotRunning, request

pytestmark = pytest.mark.timeout(30)


async def test_json_lines_on_one_connection(sim: SimBooth) -> None:
    reader, writer = await asyncio.open_unix_connection(str(sim.control_socket))
    try:

        async def ask(line: bytes) -> dict[str, Any]:
            writer.write(line + b"\n")
            async with asyncio.timeout(5):
                answer: dict[str, Any] = json.loads(await reader.readline())
            return answer

        assert await ask(b'{"cmd": "ping"}') == {"ok": True}
        assert await ask(b'{"cmd": "fault", "name": "o2_leak", "value": 2500}') == {
            "ok": True,
            "faults": ["o2_leak"],
        }
        state = (await ask(b'{"cmd": "state"}'))["state"]
        assert state["o2_ppm"] == 2500 and state["fault_values"] == {"o2_leak": 2500.0}
        assert await ask(b'{"cmd": "clear", "name": null}') == {"ok": True, "faults": []}
        assert await ask(b"not json") == {"ok": False, "error": "not JSON"}
        assert (await ask(b"[1, 2]"))["error"] == "a request is a JSON object"
        assert "unknown command 'explode'" in (await ask(b'{"cmd": "explode"}'))["error"]
        bad = await ask(b'{"cmd": "fault", "name": "o2_leak", "value": "lots"}')
        assert bad["ok"] is False and "numeric" in bad["error"]
        assert sim.state()["faults"] == []
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def test_request_to_no_simulator_says_so(tmp_path) -> None:
    with pytest.raises(SimNotRunning, match="simulator not running at"):
        request(tmp_path / "nothing.sock", {"cmd": "ping"})
