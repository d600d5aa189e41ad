"""The control channel of a running simulator: a unix socket speaking JSON lines.

One request object per line, one reply object per line, as many as the client likes on one
connection:

    {"cmd": "state"}                          -> {"ok": true, "state": {...}}
    {"cmd": "fault", "name": N, "value": V}   -> {"ok": true, "faults": [...]}
    {"cmd": "clear", "name": N or null}       -> {"ok": true, "faults": [...]}
    {"cmd": "ping"}                           -> {"ok": true}
    anything wrong                            -> {"ok": false, "error": "one line"}
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._streams import close_server

log = logging.getLogger(__name__)

MAX_REQUEST = 64 * 1024
DEFAULT_TIMEOUT_S = 5.0

Handler = Callable[[dict[str, Any]], dict[str, Any]]


class SimNotRunning(ConnectionError):
    """Nothing answers on the control socket."""


class ControlServer:
    """Async context manager: serves ``handler`` on a unix socket at ``path``."""

    def __init__(self, path: Path, handler: Handler) -> None:
        self.path = path
        self._handler = handler
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> ControlServer:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() or self.path.is_symlink():
            if await _answers(self.path):
                raise FileExistsError(f"a simulator is already running at {self.path}")
            self.path.unlink()
        self._server = await asyncio.start_unix_server(
            self._serve, str(self.path), limit=MAX_REQUEST
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await close_server(self._server, self._connections)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            while line := await reader.readline():
                reply = self._answer(line)
                writer.write(json.dumps(reply).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, ValueError):
            pass  # a client that went away, or a line over the limit
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _answer(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
        except ValueError:
            return {"ok": False, "error": "not JSON"}
        if not isinstance(request, dict):
            return {"ok": False, "error": "a request is a JSON object"}
        try:
            return self._handler(request)
        except Exception as exc:  # every failure is an answer, never a dead channel
            log.exception("control request %r failed", request)
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}


class BadReply(ValueError):
    """The control socket answered with something that is not a reply (not a JSON object)."""


def request(
    path: Path, req: dict[str, Any], timeout_s: float = DEFAULT_TIMEOUT_S
) -> dict[str, Any]:
    """One request to a running simulator (blocking).

    SimNotRunning if nothing listens at ``path``; TimeoutError (naming the socket, the request
    and the timeout) if it does not answer in time; another OSError (naming the socket) if the
    socket fails; BadReply if the answer is not a JSON object.
    """
    text = json.dumps(req)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout_s)
        try:
            s.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise SimNotRunning(f"simulator not running at {path}") from exc
        except TimeoutError:
            raise TimeoutError(
                f"simulator at {path}: no connection within {timeout_s:g} s for {text}"
            ) from None
        except OSError as exc:
            raise OSError(exc.errno, f"control socket {path}: {exc.strerror or exc}") from exc
        try:
            s.sendall(text.encode() + b"\n")
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    raise SimNotRunning(f"simulator at {path} closed the connection")
                buf += chunk
        except TimeoutError:
            raise TimeoutError(
                f"simulator at {path} did not answer {text} within {timeout_s:g} s"
            ) from None
        except SimNotRunning:
            raise
        except OSError as exc:
            raise OSError(
                exc.errno, f"control socket {path}: {exc.strerror or exc} (request {text})"
            ) from exc
    try:
        reply = json.loads(buf)
    except ValueError:
        reply = None
    if not isinstance(reply, dict):
        shown = buf.strip()[:80]
        raise BadReply(f"simulator at {path} answered {text} with {shown!r}: not a JSON object")
    return reply


async def _answers(path: Path, timeout_s: float = 1.0) -> bool:
    """Whether a simulator answers a ping at ``path`` (it may be in this very event loop)."""
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_unix_connection(str(path))
            try:
                writer.write(b'{"cmd": "ping"}\n')
                line = await reader.readline()
            finally:
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()
        return bool(json.loads(line).get("ok"))
    except (OSError, ValueError, TimeoutError):
        return False
