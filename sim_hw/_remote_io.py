"""The remote I/O module's communication watchdog. Pure: stepped by ``dt``.

The watchdog arms at the first write of ``watchdog_refresh`` (so a module nobody talks to yet does
not report a trip). Once armed, when ``watchdog_refresh`` has not been written for
``watchdog_timeout_ms`` (0 disables it), every coil drops to its safe value and
``watchdog_tripped`` is set; the coils are held there, whatever the master writes, until it writes
1 to ``watchdog_clear``. Clearing restarts the timeout; the coils stay safe until written.

A tripped module refuses its outputs at the very write (a bank write hook), not at its next
step: a master's readback right after a refused write shows the safe value, as a real module's
does. ``watchdog_clear`` likewise acts at its write, so a coil written right after it counts.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Literal

from ._banks import RegisterBank, WriteHook

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
        for coil in self.coils:
            bank.hook_write(coil, self._coil_hook(coil))
        bank.hook_write("watchdog_clear", self._on_clear)

    def _coil_hook(self, coil: str) -> WriteHook:
        def kept(old: int, written: int) -> int:
            if not self.tripped:
                return written
            safe = self.safe_outputs.get(coil, False)
            # Held whatever the master writes: at its safe value, or as it was ("hold").
            return old if safe == "hold" else int(safe is True)

        return kept

    def _on_clear(self, old: int, written: int) -> int:
        if written:
            self._clear()
        return 0  # a command: it reads back 0 once done

    def _clear(self) -> None:
        if self.tripped:
            self.tripped = False
            self._since_refresh_s = 0.0
            self.bank.set("watchdog_tripped", False)
            log.info("io: watchdog cleared")

    def step(self, dt_s: float) -> None:
        bank = self.bank
        seq = bank.write_seq("watchdog_refresh")
        if seq != self._refresh_seq:
            self._refresh_seq = seq
            self._since_refresh_s = 0.0
            self.armed = True
        else:
            self._since_refresh_s += dt_s
        if bank.get_raw("watchdog_clear"):  # set without a master's write (the write acts at once)
            bank.set("watchdog_clear", 0)
            self._clear()
        timeout_s = float(bank.get("watchdog_timeout_ms")) / 1000.0
        if self.armed and timeout_s > 0 and self._since_refresh_s > timeout_s and not self.tripped:
            self.tripped = True
            log.warning(
                "io: watchdog not refreshed for %.0f ms: outputs forced safe", timeout_s * 1000
            )
        if self.tripped:
            # Also enforced here, every step: whatever set a coil, it stays safe while tripped.
            for coil in self.coils:
                safe = self.safe_outputs.get(coil, False)
                if safe != "hold":
                    bank.set(coil, safe)
        bank.set("watchdog_tripped", self.tripped)

    def coil(self, name: str) -> bool:
        return name in self.bank and bool(self.bank.get(name))
