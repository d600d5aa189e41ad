"""The sd_notify protocol (READY, WATCHDOG, STATUS, STOPPING) without a dependency.

Outside systemd (no NOTIFY_SOCKET) every call is a no-op.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


class SdNotifier:
    def __init__(self) -> None:
        addr = os.environ.get("NOTIFY_SOCKET")
        self._sock: socket.socket | None = None
        self._addr: str | None = None
        if addr:
            if addr.startswith("@"):
                addr = "\0" + addr[1:]
            self._addr = addr
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sock.setblocking(False)
        #: systemd's WatchdogSec in seconds, or None when the unit has no watchdog.
        usec = os.environ.get("WATCHDOG_USEC")
        self.watchdog_s = int(usec) / 1e6 if usec and usec.isdigit() else None

    def notify(self, state: str) -> None:
        if self._sock is None or self._addr is None:
            return
        try:
            self._sock.sendto(state.encode(), self._addr)
        except OSError as exc:
            log.warning("sd_notify %r failed: %s", state, exc)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
