"""A pseudo-terminal standing in for a serial port, reachable at the config's path (a symlink).

The simulator keeps the master side; a client opens the path (the slave) as it would open a
USB-RS485 adapter. The simulator also keeps the slave open, so that the line survives clients
closing and reopening it (with no slave open, reads on the master fail with EIO).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import struct
import termios
import tty
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

READ_CHUNK = 4096


class PtyLink:
    """Async context manager: a raw pty, its slave linked at ``link_path``.

    ``on_data`` is called from the event loop with every chunk a client writes.
    """

    def __init__(self, link_path: Path, on_data: Callable[[bytes], None]) -> None:
        self.link_path = link_path
        self._on_data = on_data
        self._master = -1
        self._slave = -1
        self._slave_name = ""
        self._loop: asyncio.AbstractEventLoop | None = None

    async def __aenter__(self) -> PtyLink:
        master, slave = os.openpty()
        try:
            tty.setraw(slave)
            os.set_blocking(master, False)
            self._slave_name = os.ttyname(slave)
            self._link()
        except BaseException:
            os.close(master)
            os.close(slave)
            raise
        self._master, self._slave = master, slave
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(master, self._readable)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._loop is not None and self._master >= 0:
            self._loop.remove_reader(self._master)
        with contextlib.suppress(OSError):
            if os.readlink(self.link_path) == self._slave_name:
                self.link_path.unlink()
        for fd in (self._master, self._slave):
            if fd >= 0:
                os.close(fd)
        self._master = self._slave = -1

    def _link(self) -> None:
        path = self.link_path
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink():
            # A link left by a simulator that died: ours now (the caller made sure no simulator
            # is running on this config).
            path.unlink()
        elif path.exists():
            raise FileExistsError(f"{path} exists and is not a link; refusing to replace it")
        os.symlink(self._slave_name, path)

    def _readable(self) -> None:
        try:
            data = os.read(self._master, READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            log.debug("%s: read failed: %s", self.link_path, exc)
            return
        if data:
            self._on_data(data)

    def pending_to_client(self) -> int:
        """Bytes written to the client that it has not read yet."""
        buf = fcntl.ioctl(self._slave, termios.FIONREAD, b"\0\0\0\0")
        return int(struct.unpack("i", buf)[0])

    def drop_pending_to_client(self) -> None:
        """Discard what the client has not read: it is stale by now."""
        termios.tcflush(self._slave, termios.TCIFLUSH)

    def write(self, data: bytes) -> None:
        """Best effort, never blocking: with nobody reading, a full line buffer drops the data
        (as bytes sent on a wire nobody listens to are lost)."""
        if self._master < 0:
            return
        try:
            os.write(self._master, data)
        except (BlockingIOError, InterruptedError):
            log.debug("%s: line buffer full, %d bytes dropped", self.link_path, len(data))
        except OSError as exc:
            log.debug("%s: write failed: %s", self.link_path, exc)
