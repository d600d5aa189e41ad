"""What every device driver offers the supervisor."""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

from ._config import DeviceConfig
from ._reading import Reading


@runtime_checkable
class Device(Protocol):
    """One configured device.

    An async context manager: entering never fails because the device is down (it connects
    lazily and reconnects with backoff inside ``poll``/``write``); leaving closes its links and
    cancels its tasks.
    """

    name: str
    config: DeviceConfig

    async def poll(self) -> dict[str, Reading]:
        """Every point and bit, keyed by name. Never raises a DeviceError: failures are quality.

        A GOOD reading carries ``ts = time.monotonic()`` at receipt; a failed read keeps the last
        value and its ts with quality NO_COMM (no answer) or BAD (unusable answer); a GOOD
        reading older than ``config.stale_s`` is STALE.
        """
        ...

    async def write(self, point: str, value: float | bool) -> None:
        """Write an engineering value; raises DeviceError subclasses; never retried blindly.

        Verified by readback (WriteVerifyError) unless the point is a command point.
        """
        ...

    async def unconfirmed(self, values: Mapping[str, float | bool]) -> frozenset[str]:
        """The points of ``values`` a read-back does not show at that value now (a device that
        reset, an output changed by hand), or that have no read-back; raises a DeviceError when
        the device cannot be read. What a periodic re-assert needs to write again."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...
