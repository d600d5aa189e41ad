"""S6F11 and S5F1 from the records' ordered events outbox, on the GEM link's own cursor.

Gap-free and in order: an event is sent only after every earlier one was answered (or skipped
because the host disabled it), and the cursor (``link_cursors``, link ``gem``) moves past it
only then, durably (once per batch: after a crash the host may see the tail of a batch twice,
with the same DATAID, never a gap). While the link is down or OFF-LINE the cursor stands
still: that is the spool (S6F11/S5F1, per S2F43), kept in the outbox across restarts and sent,
in order, when the host is back, ahead of anything new. S6F23 purge moves the cursor past it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from booth_ctl.links.gem._equipment import Equipment
from booth_ctl.links.gem._gem_vars import (
    ALARM_BY_ALID,
    CEIDS,
    DV_BY_ID,
    OTHER_ALID,
    SV_BY_ID,
    alid_of,
    value_item,
)
from booth_ctl.links.gem._hsms import ConnectionClosed, ReplyTimeout, TransactionAborted
from booth_ctl.links.gem._secs2 import U4, A, B, Item, L
from booth_ctl.records import _gem_store
from booth_ctl.records._recorder import Records

log = logging.getLogger("booth_ctl.gem")

LINK = "gem"
BATCH = 200
#: After a reply timeout (T3) the same event is tried again this much later.
RETRY_S = 1.0
ALTX_MAX = 120
ALARM_CATEGORY = {"critical": 2, "alarm": 4, "warning": 6}


class EventPump:
    def __init__(self, records: Records, eq: Equipment) -> None:
        self._records = records
        self._eq = eq
        self.cursor = 0
        #: The newest seq when communication was last established: what is at or before it and
        #: past the cursor is the spool.
        self._boundary = 0
        self._need_boundary = True
        #: Set while a spool waits for the host's S6F23 (EC 2003 = 1).
        self.held = False
        #: Seq of the event whose S5F1 went out already (its S6F11 is still owed).
        self._alarm_sent = 0
        self.sent = 0

    async def load(self) -> None:
        store = self._records.store
        cursor = await self._records.call(_gem_store.link_cursor, store, LINK)
        if cursor is None:
            # First start of the link: the host is owed what happens from now on, not history.
            cursor = await self._records.call(store.last_seq)
            await self._records.call(_gem_store.set_link_cursor, store, LINK, cursor)
        self.cursor = self._boundary = cursor

    # ------------------------------------------------------------------ hooks for GEM

    def wake(self) -> None:
        self._eq.changed.set()

    def on_communicating(self) -> None:
        self._need_boundary = True

    def spooled(self) -> int:
        return max(0, self._boundary - self.cursor)

    async def settle(self) -> int:
        """After communication is (re-)established: fix what the spool is; its size."""
        if self._need_boundary:
            self._need_boundary = False
            last = await self._records.call(self._records.store.last_seq)
            self._boundary = max(self.cursor, last)
            if self.spooled():
                self.held = self._eq.state.ecs.get(2003, 0) == 1
                log.info("GEM: %d spooled events %s", self.spooled(),
                         "wait for the host's S6F23" if self.held else "to send")
        return self.spooled()

    def transmit(self) -> None:
        """S6F23 transmit: the spool goes out now (it is already going unless held)."""
        self.held = False
        self.wake()

    async def purge(self) -> int:
        dropped = self.spooled()
        if dropped:
            self.cursor = self._boundary
            await self._records.call(
                _gem_store.reset_link_cursor, self._records.store, LINK, self.cursor
            )
        self.held = False
        self.wake()
        return dropped

    # ------------------------------------------------------------------ the loop

    async def run(self) -> None:
        store = self._records.store
        eq = self._eq
        while True:
            if not eq.can_send or self.held:
                eq.changed.clear()
                if not eq.can_send or self.held:
                    await eq.changed.wait()
                continue
            if self._need_boundary:
                await self.settle()
                continue
            eq.changed.clear()
            batch = await self._records.call(_gem_store.events_after, store, self.cursor, BATCH)
            if not batch:
                await eq.changed.wait()
                continue
            before = self.cursor
            try:
                for ev in batch:
                    if not eq.can_send:
                        break
                    await self._deliver(ev)
                    self.cursor = int(ev["seq"])
            except ConnectionClosed:
                continue
            except ReplyTimeout as exc:
                log.warning("GEM: %s; the event is sent again in %.0f s", exc, RETRY_S)
                await asyncio.sleep(RETRY_S)
            finally:
                # Once per batch, not per event: a commit is an fsync, and an event must not
                # wait for the one before it to be put on record. A crash between the two
                # sends the rest of a batch again (the same DATAID: the seq), never a gap.
                if self.cursor != before:
                    await self._records.call(
                        _gem_store.set_link_cursor, store, LINK, self.cursor
                    )

    async def _deliver(self, ev: dict[str, Any]) -> None:
        eq = self._eq
        conn = eq.conn
        if conn is None:
            raise ConnectionClosed("no host")
        seq = int(ev["seq"])
        spooled = seq <= self._boundary
        kind = str(ev.get("type"))
        if kind in ("alarm_set", "alarm_cleared") and self._alarm_sent != seq:
            alid = alid_of(str(ev.get("code")))
            if alid not in eq.state.disabled_alids and (not spooled or eq.state.spooled(5, 1)):
                await self._request(conn, 5, 1, alarm_report(ev, alid))
            self._alarm_sent = seq
        ceid = CEIDS.get(kind)
        if ceid is None or ceid in eq.state.disabled_ceids:
            return
        if spooled and not eq.state.spooled(6, 11):
            return
        await self._request(conn, 6, 11, self.event_report(ev, ceid))
        self.sent += 1

    @staticmethod
    async def _request(conn: Any, stream: int, function: int, item: Item) -> None:
        try:
            await conn.request(stream, function, item)
        except TransactionAborted as exc:
            # The host would not take it (SxF0 or reject): it is not sent again.
            log.warning("GEM: the host aborted S%dF%d: %s", stream, function, exc)

    def event_report(self, ev: dict[str, Any], ceid: int) -> Item:
        eq = self._eq
        reports = []
        for rptid in eq.state.links.get(ceid, []):
            vids = eq.state.reports.get(rptid, [])
            svs = [v for v in vids if v in SV_BY_ID]
            sv_values = dict(zip(svs, eq.sv_items(svs), strict=True)) if svs else {}
            values = []
            for vid in vids:
                dv = DV_BY_ID.get(vid)
                if dv is not None:
                    values.append(value_item(dv, _field(ev, dv.name)))
                else:
                    values.append(sv_values.get(vid, L()))
            reports.append(L(U4(rptid), L(*values)))
        return L(U4(int(ev["seq"]) & 0xFFFFFFFF), U4(ceid), L(*reports))


def _field(ev: dict[str, Any], name: str) -> Any:
    value = ev.get(name)
    if isinstance(value, dict | list):
        return None
    return value


def alarm_report(ev: dict[str, Any], alid: int) -> Item:
    setting = ev.get("type") == "alarm_set"
    # The category of the alarm's code (an alarm of no known code: by its severity).
    category = ALARM_BY_ALID[alid][1] if alid != OTHER_ALID else ALARM_CATEGORY.get(
        str(ev.get("severity")), 4
    )
    text = str(ev.get("text") or ev.get("id") or "")
    text = f"{ev.get('id')}: {text}" if ev.get("id") and text != ev.get("id") else text
    alcd = category | (0x80 if setting else 0)
    return L(B(alcd), U4(alid), A(text.encode("ascii", "replace").decode()[:ALTX_MAX]))
