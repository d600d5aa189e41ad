"""Serial ports by path: what a path points at, so that a driver notices a port that was
unplugged and plugged back (re-enumerated under the same name, a new device node)."""

from __future__ import annotations

import os


def port_identity(path: str) -> tuple[int, int, int] | None:
    """What a serial port path points at now (None if nothing); changes when the device
    re-enumerates."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_rdev)
