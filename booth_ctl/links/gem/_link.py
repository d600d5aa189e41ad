"""``async with GemLink(...)``: the booth's SECS/GEM equipment interface, beside the MQTT link.

It serves one host over HSMS-SS, answers through the one command authority, reads the booth's
status through the callables the runtime gives it and sends the records' events outbox on its
own cursor. The control mode is read from the records (as the MQTT link does): GEM's ON-LINE
LOCAL/REMOTE is that mode.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol

from booth_ctl.config._booth import GemConfig
from booth_ctl.links.gem._equipment import Equipment
from booth_ctl.links.gem._events import EventPump
from booth_ctl.links.gem._gem_state import GemState
from booth_ctl.links.gem._hsms import Timers
from booth_ctl.links.gem._hsms_server import HsmsServer
from booth_ctl.links.gem._services import Services
from booth_ctl.records import _gem_store
from booth_ctl.records._mode_watch import follow_mode
from booth_ctl.records._recorder import Records

log = logging.getLogger("booth_ctl.gem")

#: How often the control mode is read from the records (it is switched at the booth's PC).
MODE_POLL_S = 0.5
#: Host terminal messages kept for the HMI and tests.
TERMINAL_KEEP = 50
TERMINAL_TEXT_MAX = 1000
#: A port that cannot be listened on is tried again this often.
LISTEN_RETRY_S = 5.0


class SourceLike(Protocol):
    @property
    def link(self) -> str: ...


class AuthorityLike(Protocol):
    async def submit(
        self, command: str, body: Any, source: Any
    ) -> dict[str, Any] | None: ...


class GemLink:
    def __init__(
        self,
        cfg: GemConfig,
        records: Records,
        authority: AuthorityLike,
        source: SourceLike,
        *,
        status: Callable[[], dict[str, Any]],
        telemetry: Callable[[], dict[str, Any] | None],
    ) -> None:
        self._cfg = cfg
        self._records = records
        self._authority = authority
        self._source = source
        self._status = status
        self._telemetry = telemetry
        self.equipment: Equipment | None = None
        self.pump: EventPump | None = None
        self.server: HsmsServer | None = None
        self.terminal_messages: list[tuple[int, str]] = []
        self._tasks: list[asyncio.Task[None]] = []
        #: Set while the HSMS port is listening.
        self.listening = asyncio.Event()

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.port

    async def __aenter__(self) -> GemLink:
        store = self._records.store
        settings = await self._records.call(_gem_store.gem_settings, store)
        state = GemState.from_settings(settings)
        services = Services(
            status=self._safe_status,
            telemetry=self._safe_telemetry,
            seq=lambda: self.pump.cursor if self.pump else 0,
            submit=self._submit,
            on_communicating=lambda: self.pump.on_communicating() if self.pump else None,
            spooled=self._spooled,
            purge_spool=self._purge,
            transmit_spool=lambda: self.pump.transmit() if self.pump else None,
            terminal=self._terminal,
        )
        eq = Equipment(state, save=self._save, deps=services)
        eq.set_mode(await self._records.call(store.get_mode))
        self.equipment = eq
        pump = EventPump(self._records, eq)
        await pump.load()
        self.pump = pump
        self._records.on_committed(pump.wake)
        self._tasks = [
            asyncio.create_task(self._serve(eq), name="gem-hsms"),
            asyncio.create_task(pump.run(), name="gem-events"),
            asyncio.create_task(self._watch_mode(), name="gem-mode"),
        ]
        return self

    async def _serve(self, eq: Equipment) -> None:
        """Listen; a port that cannot be had is logged and tried again (the booth runs on)."""
        c = self._cfg
        failing = False
        while True:
            server = HsmsServer(
                c.host, c.port, c.device_id, eq, Timers(c.t3_s, c.t6_s, c.t7_s, c.t8_s)
            )
            try:
                async with server:
                    if failing:
                        log.warning("GEM: listening on %s:%d again", c.host, c.port)
                        failing = False
                    self.server = server
                    self.listening.set()
                    await asyncio.Future()  # until cancelled at the link's exit
            except OSError as exc:
                if not failing:
                    log.error("gem.port %s:%d: cannot listen: %s (tried again every %.0f s)",
                              c.host, c.port, exc, LISTEN_RETRY_S)
                    failing = True
            finally:
                self.listening.clear()
            await asyncio.sleep(LISTEN_RETRY_S)

    async def __aexit__(self, *exc: object) -> None:
        # The HSMS server goes first (it says separate to a connected host), then the rest.
        for t in self._tasks:
            t.cancel()
            await asyncio.gather(t, return_exceptions=True)
        self._tasks = []

    # ------------------------------------------------------------------ services

    def _safe_status(self) -> dict[str, Any]:
        try:
            return self._status()
        except Exception:
            log.exception("GEM: reading the booth's status failed")
            return {}

    def _safe_telemetry(self) -> dict[str, Any] | None:
        try:
            return self._telemetry()
        except Exception:
            # Before the first scan some readings do not exist yet: the SVs are empty then.
            return None

    async def _submit(self, command: str, body: dict[str, Any]) -> dict[str, Any] | None:
        return await self._authority.submit(command, body, self._source)

    async def _save(self) -> None:
        assert self.equipment is not None
        await self._records.call(
            _gem_store.put_gem_settings, self._records.store, self.equipment.state.settings()
        )

    async def _spooled(self) -> int:
        assert self.pump is not None
        return await self.pump.settle()

    async def _purge(self) -> int:
        assert self.pump is not None
        return await self.pump.purge()

    def _terminal(self, tid: int, text: str) -> None:
        text = text[:TERMINAL_TEXT_MAX]
        log.warning("GEM: message from the host (terminal %d): %s", tid, text)
        self.terminal_messages = [*self.terminal_messages[-(TERMINAL_KEEP - 1):], (tid, text)]
        # Into the events outbox: the MQTT events (boothctl watch) and the HMI feed show it.
        self._records.submit("host_message", {"link": "gem", "terminal": tid, "text": text})

    async def _watch_mode(self) -> None:
        eq = self.equipment
        assert eq is not None
        await follow_mode(self._records, "GEM", eq.set_mode, MODE_POLL_S)

