"""HSMS-SS passive entity on asyncio (SEMI E37 / E37.1): one host connection at a time.

The equipment listens; the host connects and selects. Control messages (select, deselect,
linktest, separate, reject) are answered here; data messages go to the :class:`DataHandler`,
one at a time and in order, on a task of their own, so a slow handler never holds up a linktest
or the reply to a message the equipment sent. Timers: T3 (reply), T6 (control transaction), T7
(not selected after connect), T8 (between the bytes of one message).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from dataclasses import dataclass
from typing import Protocol

from booth_ctl.links.gem._hsms_frame import (
    CONTROL_SESSION,
    MAX_MESSAGE_LEN,
    DeselectStatus,
    Frame,
    RejectReason,
    SelectStatus,
    SType,
    control,
    data,
    parse,
)
from booth_ctl.links.gem._secs2 import B, Item, SecsFormatError

log = logging.getLogger("booth_ctl.gem.hsms")


class HsmsError(Exception):
    """The base of this link's failures."""


class ConnectionClosed(HsmsError):
    pass


class ReplyTimeout(HsmsError):
    pass


class TransactionAborted(HsmsError):
    """The host answered SxF0 (or an S9 error) instead of a reply."""


class SecsError(HsmsError):
    """Raised by a data handler: answer with S9F<function> carrying the message's header."""

    def __init__(self, function: int, why: str) -> None:
        super().__init__(why)
        self.function = function


def unknown_stream(why: str) -> SecsError:
    return SecsError(3, why)


def unknown_function(why: str) -> SecsError:
    return SecsError(5, why)


def illegal_data(why: str) -> SecsError:
    return SecsError(7, why)


@dataclass(frozen=True)
class Timers:
    t3_s: float = 45.0
    t6_s: float = 5.0
    t7_s: float = 10.0
    t8_s: float = 5.0


class DataHandler(Protocol):
    async def on_data(self, frame: Frame, item: Item | None) -> tuple[int, Item | None] | None:
        """The reply (function, text) to a primary message, or None for no reply."""
        ...

    def on_selected(self, conn: HsmsConnection) -> None: ...

    def on_not_selected(self) -> None: ...


class HsmsConnection:
    """One TCP connection of the passive entity, from accept to close."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        handler: DataHandler,
        *,
        device_id: int,
        timers: Timers,
        systems: itertools.count[int],
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._handler = handler
        self.device_id = device_id
        self.timers = timers
        self._systems = systems
        self.selected = False
        self._open: dict[int, asyncio.Future[Frame]] = {}
        self._inbox: asyncio.Queue[tuple[Frame, Item | None]] = asyncio.Queue()
        self._closed = asyncio.Event()
        self._select_seen = asyncio.Event()
        self._deselected = asyncio.Event()
        self.peer = writer.get_extra_info("peername")

    # ------------------------------------------------------------------ sending

    def _next_system(self) -> int:
        return next(self._systems) & 0xFFFFFFFF

    async def _write(self, frame: Frame) -> None:
        if self._closed.is_set():
            raise ConnectionClosed("the HSMS connection is closed")
        log.debug("-> %s", frame)
        self._writer.write(frame.to_bytes())
        try:
            await self._writer.drain()
        except (ConnectionError, OSError) as exc:
            self.close()
            raise ConnectionClosed(f"HSMS connection lost while sending: {exc}") from exc

    async def send(self, stream: int, function: int, item: Item | None) -> None:
        """A message that wants no reply."""
        if not self.selected:
            raise ConnectionClosed("the HSMS connection is not selected")
        await self._write(
            data(stream, function, item, device=self.device_id, system=self._next_system(),
                 wbit=False)
        )

    async def request(self, stream: int, function: int, item: Item | None) -> Item | None:
        """Send a primary message with the W-bit and return its reply's text (T3 bound)."""
        if not self.selected:
            raise ConnectionClosed("the HSMS connection is not selected")
        system = self._next_system()
        frame = data(stream, function, item, device=self.device_id, system=system, wbit=True)
        reply = await self._transaction(frame, self.timers.t3_s, f"S{stream}F{function + 1}")
        if reply is None:
            # T3: tell the host (S9F9 with our header) and give up on it.
            with contextlib.suppress(HsmsError):
                await self.send(9, 9, B(*frame.header))
            raise ReplyTimeout(
                f"no S{stream}F{function + 1} from the host within T3={self.timers.t3_s} s"
            )
        if reply.function == 0 or reply.stream != stream:
            raise TransactionAborted(f"the host answered {reply} to S{stream}F{function}")
        try:
            return reply.item()
        except SecsFormatError as exc:
            raise TransactionAborted(f"the host's S{stream}F{function + 1} is broken: {exc}") \
                from exc

    async def linktest(self) -> None:
        """A linktest round trip (T6 bound); ReplyTimeout when the host does not answer."""
        frame = control(SType.LINKTEST_REQ, self._next_system())
        if await self._transaction(frame, self.timers.t6_s, "linktest.rsp") is None:
            self.close()
            raise ReplyTimeout(f"no linktest.rsp within T6={self.timers.t6_s} s")

    async def _transaction(self, frame: Frame, timeout_s: float, what: str) -> Frame | None:
        fut: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        self._open[frame.system] = fut
        try:
            await self._write(frame)
            async with asyncio.timeout(timeout_s):
                return await fut
        except TimeoutError:
            return None
        finally:
            self._open.pop(frame.system, None)

    # ------------------------------------------------------------------ receiving

    async def run(self) -> None:
        """Serve the connection until it closes (by either side, T7 or a broken stream)."""
        worker = asyncio.create_task(self._work(), name="gem-hsms-worker")
        t7 = asyncio.create_task(self._t7(), name="gem-hsms-t7")
        try:
            while not self._closed.is_set():
                frame = await self._read_frame()
                if frame is None:
                    break
                await self._dispatch(frame)
        except (ConnectionError, OSError, asyncio.IncompleteReadError) as exc:
            log.info("HSMS connection from %s lost: %s", self.peer, exc)
        except HsmsError as exc:
            log.warning("HSMS connection from %s closed: %s", self.peer, exc)
        finally:
            self.close()
            for t in (worker, t7):
                t.cancel()
            await asyncio.gather(worker, t7, return_exceptions=True)
            for fut in self._open.values():
                if not fut.done():
                    fut.set_exception(ConnectionClosed("the HSMS connection closed"))
            if self.selected:
                self.selected = False
                self._handler.on_not_selected()

    async def _t7(self) -> None:
        # After connect (and after a deselect) the host must select within T7.
        while True:
            try:
                async with asyncio.timeout(self.timers.t7_s):
                    await self._select_seen.wait()
            except TimeoutError:
                log.warning("HSMS: %s did not select within T7=%s s: closing",
                            self.peer, self.timers.t7_s)
                self.close()
                return
            self._select_seen.clear()
            await self._deselected.wait()
            self._deselected.clear()

    async def _read_frame(self) -> Frame | None:
        try:
            first = await self._reader.readexactly(1)
        except asyncio.IncompleteReadError:
            return None
        t8 = self.timers.t8_s
        try:
            # T8: once a message has begun, each further piece must come within T8.
            async with asyncio.timeout(t8):
                rest = await self._reader.readexactly(3)
            length = int.from_bytes(first + rest, "big")
            if not 10 <= length <= MAX_MESSAGE_LEN:
                raise HsmsError(f"message length {length} out of 10..{MAX_MESSAGE_LEN}")
            chunks: list[bytes] = []
            left = length
            while left:
                async with asyncio.timeout(t8):
                    chunk = await self._reader.read(min(left, 65536))
                if not chunk:
                    raise asyncio.IncompleteReadError(b"".join(chunks), length)
                chunks.append(chunk)
                left -= len(chunk)
        except TimeoutError:
            raise HsmsError(f"T8={t8} s passed inside a message") from None
        frame = parse(b"".join(chunks))
        log.debug("<- %s", frame)
        return frame

    async def _reject(self, frame: Frame, reason: RejectReason) -> None:
        byte2 = frame.ptype if reason is RejectReason.PTYPE_NOT_SUPPORTED else frame.stype
        await self._write(control(SType.REJECT_REQ, frame.system, byte3=reason, byte2=byte2))

    async def _dispatch(self, frame: Frame) -> None:
        if frame.ptype != 0:
            await self._reject(frame, RejectReason.PTYPE_NOT_SUPPORTED)
            return
        st = frame.stype
        if st == SType.DATA:
            await self._on_data(frame)
        elif st == SType.SELECT_REQ:
            status = SelectStatus.ALREADY_ACTIVE if self.selected else SelectStatus.OK
            await self._write(control(SType.SELECT_RSP, frame.system, byte3=status))
            if status is SelectStatus.OK:
                self.selected = True
                self._select_seen.set()
                log.info("HSMS: selected by %s", self.peer)
                self._handler.on_selected(self)
        elif st == SType.DESELECT_REQ:
            dstatus = DeselectStatus.OK if self.selected else DeselectStatus.NOT_ESTABLISHED
            await self._write(control(SType.DESELECT_RSP, frame.system, byte3=dstatus))
            if self.selected:
                self.selected = False
                self._deselected.set()
                log.info("HSMS: deselected by %s", self.peer)
                self._handler.on_not_selected()
        elif st == SType.LINKTEST_REQ:
            await self._write(control(SType.LINKTEST_RSP, frame.system))
        elif st == SType.SEPARATE_REQ:
            log.info("HSMS: separate from %s", self.peer)
            self.close()
        elif st in (SType.SELECT_RSP, SType.DESELECT_RSP, SType.LINKTEST_RSP):
            fut = self._open.get(frame.system)
            if fut is None or fut.done():
                await self._reject(frame, RejectReason.TRANSACTION_NOT_OPEN)
            else:
                fut.set_result(frame)
        elif st == SType.REJECT_REQ:
            log.warning("HSMS: the host rejected our message sys=%#x (reason %d)",
                        frame.system, frame.byte3)
            fut = self._open.get(frame.system)
            if fut is not None and not fut.done():
                fut.set_exception(TransactionAborted(f"rejected, reason {frame.byte3}"))
        else:
            await self._reject(frame, RejectReason.STYPE_NOT_SUPPORTED)

    async def _on_data(self, frame: Frame) -> None:
        if not self.selected:
            await self._reject(frame, RejectReason.NOT_SELECTED)
            return
        if frame.session != self.device_id:
            await self.send(9, 1, B(*frame.header))
            return
        try:
            item = frame.item()
        except SecsFormatError as exc:
            log.warning("HSMS: %s with broken text (%s): S9F7", frame, exc)
            await self.send(9, 7, B(*frame.header))
            return
        if frame.function % 2 == 0:
            fut = self._open.get(frame.system)
            if fut is not None and not fut.done():
                fut.set_result(frame)
            else:
                log.warning("HSMS: %s answers nothing open: dropped", frame)
            return
        self._inbox.put_nowait((frame, item))

    async def _work(self) -> None:
        while True:
            frame, item = await self._inbox.get()
            try:
                reply = await self._handler.on_data(frame, item)
            except SecsError as exc:
                log.warning("HSMS: %s refused with S9F%d: %s", frame, exc.function, exc)
                with contextlib.suppress(HsmsError):
                    await self.send(9, exc.function, B(*frame.header))
                continue
            except HsmsError:
                continue
            except Exception:
                # A bug of ours must not end the link: the host is told the text was not taken.
                log.exception("GEM: handling %s failed", frame)
                with contextlib.suppress(HsmsError):
                    await self.send(9, 7, B(*frame.header))
                continue
            if reply is not None and frame.wbit:
                function, text = reply
                with contextlib.suppress(HsmsError):
                    await self._write(
                        data(frame.stream, function, text, device=self.device_id,
                             system=frame.system, wbit=False)
                    )

    # ------------------------------------------------------------------ closing

    def close(self) -> None:
        if not self._closed.is_set():
            self._closed.set()
            self._writer.close()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    async def separate(self) -> None:
        """Say separate.req and close (the equipment is going away)."""
        with contextlib.suppress(HsmsError):
            await self._write(control(SType.SEPARATE_REQ, self._next_system()))
        self.close()


__all__ = [
    "CONTROL_SESSION", "ConnectionClosed", "DataHandler", "HsmsConnection", "HsmsError",
    "ReplyTimeout", "SecsError", "Timers", "TransactionAborted", "illegal_data",
    "unknown_function", "unknown_stream",
]
