"""The control socket: JSON lines, several requests per connection, errors as answers."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sim_hw import BadReply, SimBooth, SimNotRunning, cli, request
from tests._util import render_config, wait_for

from .conftest import config_data

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
        # The flux lid: an operator's hand, not a fault.
        assert await ask(b'{"cmd": "flux_lid", "closed": true}') == {
            "ok": True,
            "flux_lid_closed": True,
        }
        assert sim.state()["flux_lid_closed"] is True
        await wait_for(
            lambda: sim.bank("io").get("flux_lid_closed") is True, timeout_s=2, what="lid input"
        )
        assert (await ask(b'{"cmd": "flux_lid", "closed": "yes"}'))["ok"] is False
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def test_request_to_no_simulator_says_so(tmp_path) -> None:
    with pytest.raises(SimNotRunning, match="simulator not running at"):
        request(tmp_path / "nothing.sock", {"cmd": "ping"})


@contextlib.contextmanager
def fake_control(path: Path, reply: bytes | None) -> Iterator[None]:
    """A unix socket at ``path`` answering every request with ``reply``; with None it listens
    but never accepts (a connection waits in the backlog: a hung simulator)."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(4)
    server.settimeout(0.05)
    done = threading.Event()

    def serve(answer: bytes) -> None:
        while not done.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn, contextlib.suppress(OSError):
                conn.settimeout(5)
                conn.recv(65536)
                conn.sendall(answer)

    thread = None
    if reply is not None:
        thread = threading.Thread(target=serve, args=(reply,), daemon=True)
        thread.start()
    try:
        yield
    finally:
        done.set()
        if thread is not None:
            thread.join(5)
        server.close()


def test_a_silent_simulator_times_out_naming_socket_request_and_timeout(tmp_path: Path) -> None:
    sock = tmp_path / "s.sock"
    with fake_control(sock, None), pytest.raises(TimeoutError) as info:  # listens, never reads
        request(sock, {"cmd": "state"}, timeout_s=0.2)
    message = str(info.value)
    assert str(sock) in message and '{"cmd": "state"}' in message and "0.2 s" in message


@pytest.mark.parametrize("answer", [b"Bad Gateway\n", b"[1, 2]\n", b"\xff\xfe\n"])
def test_a_reply_that_is_not_a_json_object_is_a_bad_reply(tmp_path: Path, answer: bytes) -> None:
    sock = tmp_path / "s.sock"
    with fake_control(sock, answer), pytest.raises(BadReply, match="not a JSON object") as info:
        request(sock, {"cmd": "ping"}, timeout_s=2)
    assert str(sock) in str(info.value) and "ping" in str(info.value)


def _client_config(tmp_path: Path) -> tuple[Path, Path]:
    config = render_config(tmp_path)
    return config, Path(config_data(config)["sim"]["control_socket"])


def test_cli_state_timing_out_is_one_line_naming_the_socket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config, sock = _client_config(tmp_path)
    monkeypatch.setattr(cli, "request", functools.partial(request, timeout_s=0.2))
    with fake_control(sock, None):
        code = cli.main(["state", "--config", str(config)])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1
    assert err.startswith(f"booth-sim: simulator at {sock} did not answer")
    assert '"cmd": "state"' in err and "0.2 s" in err


@pytest.mark.parametrize("answer", [b"garbage\n", b'"ok"\n', b'{"ok": true}\n'])
def test_cli_with_a_bad_reply_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], answer: bytes
) -> None:
    config, sock = _client_config(tmp_path)
    with fake_control(sock, answer):
        code = cli.main(["fault", "door_open", "--config", str(config)])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert captured.err.count("\n") == 1
    assert captured.err.startswith(f"booth-sim: simulator at {sock}")
