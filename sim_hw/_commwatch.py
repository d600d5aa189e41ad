"""A device's own comm-loss timeout: the heartbeat register a master must keep changing.

The temperature controller and the holder drive each watch one: the timeout arms at the first
heartbeat write (a device nobody has talked to yet has nothing to lose) and, from then on, a
heartbeat unchanged for ``comm_timeout_s`` (0 disables it) is a lost master.
"""

from __future__ import annotations

from ._banks import RegisterBank


class HeartbeatWatch:
    """Ages the ``heartbeat`` register of ``bank`` against its ``comm_timeout_s`` register."""

    def __init__(self, bank: RegisterBank) -> None:
        self.bank = bank
        self._value = bank.get_raw("heartbeat")
        self._writes = bank.write_seq("heartbeat")
        self._age_s = 0.0
        self._armed = False

    @property
    def timeout_s(self) -> float:
        return float(self.bank.get("comm_timeout_s"))

    @property
    def age_s(self) -> float:
        """How long the heartbeat has been unchanged, as of the last step."""
        return self._age_s

    def fresh_now(self) -> bool:
        """Fresh right now, between steps: changed since the last step (written just before, or
        in the same request as another register), or young enough."""
        timeout_s = self.timeout_s
        return (
            not self._armed
            or timeout_s <= 0
            or self.bank.get_raw("heartbeat") != self._value
            or self._age_s < timeout_s
        )

    def step(self, dt_s: float) -> bool:
        """Advance by ``dt_s``; whether the heartbeat is fresh."""
        bank = self.bank
        if bank.write_seq("heartbeat") != self._writes:
            self._writes = bank.write_seq("heartbeat")
            self._armed = True
        value = bank.get_raw("heartbeat")
        if value != self._value:
            self._value = value
            self._age_s = 0.0
        else:
            self._age_s += dt_s
        timeout_s = self.timeout_s
        return not self._armed or timeout_s <= 0 or self._age_s < timeout_s
