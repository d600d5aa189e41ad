"""The HSMS-SS passive entity's listening side: one host connection at a time (SEMI E37.1)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging

from booth_ctl.links.gem._hsms import DataHandler, HsmsConnection, Timers
from booth_ctl.links.gem._hsms_frame import SelectStatus, SType, control, parse

log = logging.getLogger("booth_ctl.gem.hsms")


class HsmsServer:
    """``async with HsmsServer(...)``: listens until the block ends; one connection at a time.

    A second host that connects while one is connected is told ``select.rsp`` "already active"
    (E37.1 HSMS-SS) and closed.
    """

    def __init__(
        self,
        host: str,
        port: int,
        device_id: int,
        handler: DataHandler,
        timers: Timers | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.device_id = device_id
        self.timers = timers or Timers()
        self._handler = handler
        self._server: asyncio.Server | None = None
        self._systems = itertools.count(1)
        self.connection: HsmsConnection | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        #: For tests and metrics: connections served and connections turned away.
        self.accepted = 0
        self.turned_away = 0

    async def __aenter__(self) -> HsmsServer:
        self._server = await asyncio.start_server(self._on_connect, self.host, self.port)
        sock = self._server.sockets[0]
        self.port = int(sock.getsockname()[1])
        log.info("GEM: HSMS passive entity listening on %s:%d (device id %d)",
                 self.host, self.port, self.device_id)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        conn = self.connection
        if conn is not None:
            await conn.separate()
        for w in list(self._writers):
            w.close()
        tasks = list(self._tasks)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=2.0)
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2.0):
                await self._server.wait_closed()

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self._writers.add(writer)
        try:
            await self._serve(reader, writer)
        except asyncio.CancelledError:
            # The top of the stream's task: asyncio's stream callback would report a
            # cancellation here as an error; a cancelled connection is simply over.
            pass
        finally:
            self._writers.discard(writer)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if self.connection is not None and not self.connection.closed:
                await self._turn_away(reader, writer)
                return
            conn = HsmsConnection(
                reader, writer, self._handler, device_id=self.device_id, timers=self.timers,
                systems=self._systems,
            )
            self.connection = conn
            self.accepted += 1
            log.info("GEM: host connected from %s", conn.peer)
            try:
                await conn.run()
            finally:
                if self.connection is conn:
                    self.connection = None
                log.info("GEM: host %s disconnected", conn.peer)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _turn_away(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.turned_away += 1
        log.warning("GEM: a second host from %s while one is connected: refused",
                    writer.get_extra_info("peername"))
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self.timers.t7_s):
                head = await reader.readexactly(14)
            frame = parse(head[4:])
            if frame.stype == SType.SELECT_REQ:
                writer.write(control(SType.SELECT_RSP, frame.system,
                                     byte3=SelectStatus.ALREADY_ACTIVE).to_bytes())
                await writer.drain()
