"""GEM (SEMI E30) on the HSMS link: communication and control state, the gate that answers SxF0
when the control state forbids a message, S1 and the dispatch to the other streams.

Control state is one truth with the booth's mode: ON-LINE REMOTE is mode ``remote``, ON-LINE
LOCAL is mode ``local`` (switched at the booth, ``boothctl mode``); the host may only take the
equipment OFF-LINE (S1F15) and back (S1F17), which is kept across restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable

from booth_ctl.links.gem import _services
from booth_ctl.links.gem._gem_state import GemState
from booth_ctl.links.gem._gem_vars import MDLN, SV_BY_ID, SVS, sv_values, value_item
from booth_ctl.links.gem._hsms import (
    HsmsConnection,
    HsmsError,
    illegal_data,
    unknown_function,
    unknown_stream,
)
from booth_ctl.links.gem._hsms_frame import Frame
from booth_ctl.links.gem._secs2 import U4, A, B, Item, L, SecsFormatError

log = logging.getLogger("booth_ctl.gem")

SOFTREV = "1.0"
#: Primary messages answered in every control state (E30: the host must be able to establish
#: communication and ask for ON-LINE whatever the state). S1F1 is not: OFF-LINE answers S1F0.
ALWAYS = frozenset({(1, 13), (1, 17)})
COMMACK_OK = 0
ONLACK_OK, ONLACK_REFUSED, ONLACK_ALREADY = 0, 1, 2

Handler = Callable[["Equipment", Item | None, Frame], Awaitable[tuple[int, Item | None]]]


class Equipment:
    """The :class:`~booth_ctl.links.gem._hsms.DataHandler` of the booth's GEM link."""

    def __init__(
        self,
        state: GemState,
        *,
        save: Callable[[], Awaitable[None]],
        deps: _services.Services,
    ) -> None:
        self.state = state
        self._save = save
        self.deps = deps
        self.conn: HsmsConnection | None = None
        self.communicating = asyncio.Event()
        #: Set on every change a waiting sender cares about (communicating, online).
        self.changed = asyncio.Event()
        self.mode = "remote"
        self._establish: asyncio.Task[None] | None = None
        self._handlers: dict[tuple[int, int], Handler] = {
            (1, 1): _s1f1,
            (1, 3): _s1f3,
            (1, 11): _s1f11,
            (1, 13): _s1f13,
            (1, 15): _s1f15,
            (1, 17): _s1f17,
            **_services.HANDLERS,
        }
        self._streams = {s for s, _ in self._handlers}

    # ------------------------------------------------------------------ state

    @property
    def control_state(self) -> str:
        if not self.state.online:
            return "host_offline"
        return "online_remote" if self.mode == "remote" else "online_local"

    @property
    def online(self) -> bool:
        return self.state.online

    @property
    def can_send(self) -> bool:
        return self.communicating.is_set() and self.state.online and self.conn is not None

    def set_mode(self, mode: str) -> None:
        if mode != self.mode:
            log.info("GEM: control state follows the booth's mode: %s", mode)
            self.mode = mode
            self._changed()

    def _changed(self) -> None:
        self.changed.set()

    async def save(self) -> None:
        await self._save()

    def now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(time.time() + self.state.clock_offset_s)

    def clock_text(self) -> str:
        """TIME in the format EC 2002 says: 0 YYMMDDhhmmss, 1 YYYYMMDDhhmmsscc, 2 ISO 8601."""
        now = self.now()
        fmt = self.state.ecs.get(2002, 1)
        if fmt == 0:
            return now.strftime("%y%m%d%H%M%S")
        if fmt == 2:
            return now.astimezone().isoformat(timespec="milliseconds")
        return now.strftime("%Y%m%d%H%M%S") + f"{now.microsecond // 10000:02d}"

    def sv_items(self, svids: list[int]) -> list[Item]:
        values = sv_values(
            self.deps.status(),
            self.deps.telemetry(),
            mode=self.mode,
            control_state=self.control_state,
            clock=self.clock_text(),
            seq=self.deps.seq(),
        )
        out = []
        for svid in svids:
            var = SV_BY_ID.get(svid)
            # An unknown SVID is answered with a zero-length item (E5 S1F4).
            out.append(value_item(var, values[svid]) if var else L())
        return out

    # ------------------------------------------------------------------ HSMS callbacks

    def on_selected(self, conn: HsmsConnection) -> None:
        self.conn = conn
        self._establish = asyncio.create_task(self._establish_communication(conn),
                                              name="gem-establish")

    def on_not_selected(self) -> None:
        self.conn = None
        if self._establish is not None:
            self._establish.cancel()
            self._establish = None
        if self.communicating.is_set():
            log.warning("GEM: communication with the host lost")
        self.communicating.clear()
        self._changed()

    async def _establish_communication(self, conn: HsmsConnection) -> None:
        """E30 WAIT CRA: S1F13 now, and again every EstablishCommunicationsTimeout."""
        while not self.communicating.is_set() and conn.selected:
            try:
                reply = await conn.request(1, 13, L(A(MDLN), A(SOFTREV)))
                if reply is not None and reply.items and reply.items[0].scalar == COMMACK_OK:
                    self._communicating()
                    return
            except (HsmsError, SecsFormatError) as exc:
                log.info("GEM: S1F13 to the host failed: %s", exc)
            with contextlib.suppress(asyncio.TimeoutError):
                async with asyncio.timeout(self.state.ecs.get(2001, 10)):
                    await self.communicating.wait()

    def _communicating(self) -> None:
        if not self.communicating.is_set():
            log.info("GEM: communicating with the host")
            self.communicating.set()
            self.deps.on_communicating()
            self._changed()

    async def on_data(self, frame: Frame, item: Item | None) -> tuple[int, Item | None] | None:
        key = (frame.stream, frame.function)
        handler = self._handlers.get(key)
        if handler is None:
            if frame.stream not in self._streams:
                raise unknown_stream(f"stream {frame.stream} is not served")
            raise unknown_function(f"S{frame.stream}F{frame.function} is not served")
        if key not in ALWAYS and (not self.communicating.is_set() or not self.state.online):
            # E30: not communicating, or OFF-LINE: the transaction is aborted (SxF0).
            return (0, None) if frame.wbit else None
        try:
            return await handler(self, item, frame)
        except (SecsFormatError, IndexError, TypeError, ValueError, KeyError) as exc:
            raise illegal_data(f"S{frame.stream}F{frame.function}: {exc}") from exc


# ---------------------------------------------------------------------- stream 1


async def _s1f1(eq: Equipment, item: Item | None, frame: Frame) -> tuple[int, Item | None]:
    return 2, L(A(MDLN), A(SOFTREV))


async def _s1f3(eq: Equipment, item: Item | None, frame: Frame) -> tuple[int, Item | None]:
    svids = _services.ids_of(item)
    return 4, L(*eq.sv_items(svids or [v.id for v in SVS]))


async def _s1f11(eq: Equipment, item: Item | None, frame: Frame) -> tuple[int, Item | None]:
    svids = _services.ids_of(item)
    rows = []
    for svid in svids or [v.id for v in SVS]:
        var = SV_BY_ID.get(svid)
        rows.append(L(U4(svid), A(var.name if var else ""), A(var.units if var else "")))
    return 12, L(*rows)


async def _s1f13(eq: Equipment, item: Item | None, frame: Frame) -> tuple[int, Item | None]:
    eq._communicating()
    return 14, L(B(COMMACK_OK), L(A(MDLN), A(SOFTREV)))


async def _s1f15(eq: Equipment, item: Item | None, frame: Frame) -> tuple[int, Item | None]:
    if eq.state.online:
        eq.state.online = False
        await eq.save()
        log.warning("GEM: the host took the equipment OFF-LINE (host offline)")
        eq._changed()
    return 16, B(0)


async def _s1f17(eq: Equipment, item: Item | None, frame: Frame) -> tuple[int, Item | None]:
    if eq.state.online:
        return 18, B(ONLACK_ALREADY)
    eq.state.online = True
    await eq.save()
    log.info("GEM: the host put the equipment ON-LINE (%s)", eq.control_state)
    eq._changed()
    return 18, B(ONLACK_OK)

