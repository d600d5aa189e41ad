"""The remote I/O module's communication watchdog. Pure: stepped by ``dt``.

The watchdog arms at the first write of ``watchdog_refresh`` (so a module nobody talks to yet does
not report a trip). Once armed, when ``watchdog_refresh`` has not been written for
``watchdog_timeout_ms`` (0 disables it), every coil drops to its safe value and
``watchdog_tripped`` is set; the coils are held there, whatever the master writes, until it writes
1 to ``watchdog_clear``. Clearing restarts the timeout; the coils stay safe until written.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Literal

from ._banks import RegisterBank

log = logging.getLogger(__name__)


class RemoteIO:
    def __init__(
        self,
        bank: RegisterBank,
        *,
        safe_outputs: Mapping[str, bool | Literal["hold"]],
        watchdog_ms: int,
    ) -> None:
        self.bank = bank
        self.coils = [n for n, p in bank.map.points.items() if p.table == "coil"]
        self.safe_outputs = dict(safe_outputs)
        self.tripped = False
        self.armed = False
        self._refresh_seq = bank.write_seq("watchdog_refresh")
        self._since_refresh_s = 0.0
        bank.set("watchdog_timeout_ms", watchdog_ms)
        # Power-up: outputs at their safe values ("hold" has nothing to hold yet: off).
        for coil in self.coils:
            bank.set(coil, self.safe_outputs.get(coil, False) is True)
        bank.set("watchdog_tripped", False)

    def step(self, dt_s: float) -> None:
        bank = self.bank
        seq = bank.write_seq("watchdog_refresh")
        if seq != self._refresh_seq:
            self._refresh_seq = seq
            self._since_refresh_s = 0.0
            self.armed = True
        else:
            self._since_refresh_s += dt_s
        if bank.get_raw("watchdog_clear"):
            bank.set("watchdog_clear", 0)
            if self.tripped:
                self.tripped = False
                self._since_refresh_s = 0.0
                log.info("io: watchdog cleared")
        timeout_s = float(bank.get("watchdog_timeout_ms")) / 1000.0
        if self.armed and timeout_s > 0 and self._since_refresh_s > timeout_s and not self.tripped:
            self.tripped = True
            log.warning(
                "io: watchdog not refreshed for %.0f ms: outputs forced safe", timeout_s * 1000
            )
        if self.tripped:
            for coil in self.coils:
                safe = self.safe_outputs.get(coil, False)
                if safe != "hold":
                    bank.set(coil, safe)
        bank.set("watchdog_tripped", self.tripped)

    def coil(self, name: str) -> bool:
        return name in self.bank and bool(self.bank.get(name))
