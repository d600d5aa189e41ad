"""The MES link: the booth's side of the MQTT contract (aiomqtt 2.x, MQTT 5).

One connection at a time, re-made forever with jittered backoff (aiomqtt does not reconnect by
itself); on every connection the link subscribes to its commands again, says it is ``online``
(retained; the last will says ``false``) and republishes its status. The scan never waits on
MQTT: it only calls the non-blocking :meth:`MesLink.status_changed`, :meth:`MesLink.telemetry` and
:meth:`MesLink.events_available`; publishing happens in the link's own tasks from bounded state.

Events go out from the record store's outbox in ``seq`` order, pipelined, and are marked
delivered only once the broker acknowledged them (PUBACK); after a reconnect the link resends
from the oldest unacknowledged one, so the MES sees every event at least once, in order.

Commands are taken off the connection into a bounded inbox and run one at a time by a task that
outlives connections, so a command is never cut in half by a lost link; its reply waits in the
outgoing queue until a connection can carry it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import random
import socket
import stat
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from drivers import ConfigError

from ._commands import (
    BUSY,
    CommandTarget,
    Dispatcher,
    RecipeBook,
    make_reply,
    parse_payload,
    recipe_check,
    request_id_of,
)
from ._config import LoadedConfig
from ._events import CommandRefused
from ._recorder import Records
from ._records import RecordStore

log = logging.getLogger("booth_ctl.mes")

#: Every MQTT socket of ours disables Nagle: QoS 1 round trips otherwise take ~40-90 ms.
NODELAY = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)
#: Events published per round before their acknowledgements are awaited together.
EVENT_BATCH = 200
#: QoS 1 messages in flight at once on the connection (paho queues the rest, in order).
MAX_INFLIGHT = 200
#: How often the control mode is read back from the store (another process may switch it).
MODE_POLL_S = 1.0
#: On a clean stop: how long to try to send waiting replies and ``online false``.
SHUTDOWN_FLUSH_S = 1.0
#: Connection attempts and the CONNACK wait give up after this long.
CONNECT_TIMEOUT_S = 5.0


class LinkDown(Exception):
    """The connection to the broker was lost or could not be made."""


def _first_error(exc: BaseException) -> BaseException:
    """The first leaf of a (nested) exception group, for logging a lost connection once."""
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


def _only_link_errors(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return all(_only_link_errors(e) for e in exc.exceptions)
    return isinstance(exc, aiomqtt.MqttError | OSError | LinkDown)


def read_password_file(path: Path) -> str:
    """The password, refusing a file that anyone but its owner can read."""
    try:
        st = path.stat()
    except OSError as exc:
        raise ConfigError(f"mqtt.password_file {path}: cannot read: {exc.strerror}") from exc
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"mqtt.password_file {path} is accessible by group or others "
            f"(mode {stat.S_IMODE(st.st_mode):04o}); restrict it to its owner (chmod 600)"
        )
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"mqtt.password_file {path}: cannot read: {exc.strerror}") from exc


class MesLink:
    """The MQTT side of the booth; ``async with MesLink(...) as link`` runs it until the exit."""

    def __init__(
        self,
        loaded: LoadedConfig,
        records: Records,
        dispatcher: Dispatcher,
        *,
        identifier: str | None = None,
    ) -> None:
        cfg = loaded.config
        self._loaded = loaded
        self._mqtt = cfg.mqtt
        self.root = f"booth/{cfg.booth_id}/"
        self._identifier = identifier or f"booth-{cfg.booth_id}"
        self._records = records
        self._dispatcher = dispatcher
        self._password: str | None = None
        self._tls: aiomqtt.TLSParameters | None = None

        self._inbox: asyncio.Queue[tuple[str, bytes, Properties | None]] = asyncio.Queue(
            self._mqtt.command_queue_max
        )
        self._replies: collections.deque[tuple[str, bytes, Properties | None]] = collections.deque()
        self._replies_ready = asyncio.Event()
        self._replies_drained = asyncio.Event()
        self._replies_drained.set()
        self._events_ready = asyncio.Event()
        self._status: dict[str, Any] | None = None
        self._status_dirty = asyncio.Event()
        self._telemetry: dict[str, Any] | None = None
        self._telemetry_ready = asyncio.Event()
        self._mode: str | None = None

        self._client: aiomqtt.Client | None = None
        self._tasks: list[asyncio.Task[None]] = []
        #: Set while a connection is up (subscribed, online published); for the runtime's health.
        self.connected = asyncio.Event()
        self.connections = 0

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> MesLink:
        m = self._mqtt
        if m.password_file is not None:
            self._password = read_password_file(self._loaded.resolve(m.password_file))
        if m.tls_ca or m.tls_cert:
            self._tls = aiomqtt.TLSParameters(
                ca_certs=str(self._loaded.resolve(m.tls_ca)) if m.tls_ca else None,
                certfile=str(self._loaded.resolve(m.tls_cert)) if m.tls_cert else None,
                keyfile=str(self._loaded.resolve(m.tls_key)) if m.tls_key else None,
            )
        self._mode = await self._records.call(self._records.store.get_mode)
        self._records.on_committed(self.events_available)
        self._tasks = [
            asyncio.create_task(self._connection_loop(), name="mes-connection"),
            asyncio.create_task(self._command_worker(), name="mes-commands"),
            asyncio.create_task(self._watch_mode(), name="mes-mode"),
        ]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            client = self._client
            if client is not None and self.connected.is_set():
                try:
                    async with asyncio.timeout(SHUTDOWN_FLUSH_S):
                        await self._replies_drained.wait()
                        # A clean stop sends no will: say offline ourselves.
                        await client.publish(self.root + "online", b"false", qos=1, retain=True)
                except (TimeoutError, aiomqtt.MqttError):
                    log.warning("MES link: could not say offline before stopping")
        finally:
            for t in self._tasks:
                t.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._tasks = []

    # ------------------------------------------------------------------ the scan's side

    def status_changed(self, status: dict[str, Any]) -> None:
        """The controller's status changed: publish it (retained). Never blocks."""
        self._status = status
        self._status_dirty.set()

    def telemetry(self, data: dict[str, Any]) -> None:
        """Publish these readings (QoS 0) if connected; only the newest waits. Never blocks."""
        self._telemetry = data
        self._telemetry_ready.set()

    def events_available(self) -> None:
        """New events are in the outbox. Never blocks."""
        self._events_ready.set()

    # ------------------------------------------------------------------ connection

    def _make_client(self) -> aiomqtt.Client:
        m = self._mqtt
        client = aiomqtt.Client(
            m.host,
            m.port,
            username=m.username,
            password=self._password,
            identifier=self._identifier,
            protocol=aiomqtt.ProtocolVersion.V5,
            will=aiomqtt.Will(self.root + "online", b"false", qos=1, retain=True),
            keepalive=m.keepalive_s,
            timeout=CONNECT_TIMEOUT_S,
            tls_params=self._tls,
            socket_options=NODELAY,
            max_inflight_messages=MAX_INFLIGHT,
        )
        # Pipelined event batches are normal here, not a sign of trouble.
        client.pending_calls_threshold = EVENT_BATCH + MAX_INFLIGHT
        return client

    async def _connection_loop(self) -> None:
        m = self._mqtt
        attempt = 0
        down_since: float | None = None
        while True:
            client = self._make_client()
            try:
                async with client:
                    self._client = client
                    if down_since is not None:
                        log.warning(
                            "MES link: connected to %s:%d again after %.1f s",
                            m.host,
                            m.port,
                            time.monotonic() - down_since,
                        )
                    else:
                        log.info("MES link: connected to %s:%d", m.host, m.port)
                    down_since = None
                    attempt = 0
                    await self._session(client)
            except Exception as exc:
                if not _only_link_errors(exc):
                    log.error("MES link: internal error; reconnecting", exc_info=exc)
                elif down_since is None:
                    log.warning(
                        "MES link: broker %s:%d unreachable or lost (%s); retrying",
                        m.host,
                        m.port,
                        _first_error(exc),
                    )
            finally:
                self.connected.clear()
                self._client = None
                await self._reap(client)
            if down_since is None:
                down_since = time.monotonic()
            cap = min(m.reconnect_max_s, m.reconnect_min_s * (2 ** min(attempt, 16)))
            attempt += 1
            # Equal jitter: never hammer the broker in lock step with other booths.
            await asyncio.sleep(cap / 2 + random.uniform(0, cap / 2))

    @staticmethod
    async def _reap(client: aiomqtt.Client) -> None:
        # aiomqtt cancels its keepalive task by a callback scheduled at socket close; wait for
        # it so that nothing outlives the connection.
        misc = getattr(client, "_misc_task", None)
        if isinstance(misc, asyncio.Task) and not misc.done():
            misc.cancel()
            await asyncio.gather(misc, return_exceptions=True)

    async def _session(self, client: aiomqtt.Client) -> None:
        await client.subscribe(self.root + "cmd/+", qos=1)
        await client.publish(self.root + "online", b"true", qos=1, retain=True)
        self.connections += 1
        self._status_dirty.set()
        self._telemetry_ready.clear()  # readings from before the outage are stale
        self._events_ready.set()
        self.connected.set()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._read(client), name="mes-read")
            tg.create_task(self._publish_replies(client), name="mes-replies")
            tg.create_task(self._publish_events(client), name="mes-events")
            tg.create_task(self._publish_status(client), name="mes-status")
            tg.create_task(self._publish_telemetry(client), name="mes-telemetry")

    async def _publish(
        self,
        client: aiomqtt.Client,
        topic: str,
        payload: bytes | str,
        *,
        qos: int,
        retain: bool = False,
        properties: Properties | None = None,
    ) -> None:
        await client.publish(
            topic,
            payload,
            qos=qos,
            retain=retain,
            properties=properties,
            timeout=self._mqtt.publish_timeout_s,
        )

    # ------------------------------------------------------------------ inbound

    async def _read(self, client: aiomqtt.Client) -> None:
        prefix = self.root + "cmd/"
        async for message in client.messages:
            topic = message.topic.value
            if not topic.startswith(prefix):
                continue
            command = topic[len(prefix) :]
            payload = message.payload if isinstance(message.payload, bytes) else b""
            try:
                self._inbox.put_nowait((command, payload, message.properties))
            except asyncio.QueueFull:
                self._refuse_busy(command, payload, message.properties)

    def _refuse_busy(self, command: str, payload: bytes, props: Properties | None) -> None:
        n = self._mqtt.command_queue_max
        reply = _busy_reply(
            command, payload, f"{n} commands are already waiting; try again shortly"
        )
        if reply is not None:
            self._queue_reply(reply, props)

    async def _command_worker(self) -> None:
        while True:
            command, payload, props = await self._inbox.get()
            try:
                reply = await self._dispatcher.handle(command, payload, _who(props))
            except Exception as exc:
                # The store (or a bug) failed before the command could be judged: nothing ran,
                # so the MES may simply retry.
                log.exception("MES link: command %s could not be processed", command)
                reply = _busy_reply(command, payload, f"the booth cannot take commands now: {exc}")
            if reply is not None:
                self._queue_reply(reply, props)

    # ------------------------------------------------------------------ outbound

    def _queue_reply(self, reply: dict[str, Any], props: Properties | None) -> None:
        data = json.dumps(reply, separators=(",", ":"), default=str).encode()
        corr = getattr(props, "CorrelationData", None) if props is not None else None
        out_props: Properties | None = None
        if corr is not None:
            out_props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            out_props.CorrelationData = corr
        if len(self._replies) >= self._mqtt.queue_max:
            dropped = self._replies.popleft()
            log.error("MES link: reply queue full; dropped the oldest reply (to %s)", dropped[0])
        self._replies.append((self.root + "reply", data, out_props))
        response_topic = getattr(props, "ResponseTopic", None) if props is not None else None
        if (
            isinstance(response_topic, str)
            and response_topic
            and not response_topic.startswith(self.root + "cmd/")
            and "+" not in response_topic
            and "#" not in response_topic
        ):
            self._replies.append((response_topic, data, out_props))
        self._replies_drained.clear()
        self._replies_ready.set()

    async def _publish_replies(self, client: aiomqtt.Client) -> None:
        while True:
            if not self._replies:
                self._replies_ready.clear()
                await self._replies_ready.wait()
                continue
            topic, data, props = self._replies[0]
            await self._publish(client, topic, data, qos=1, properties=props)
            self._replies.popleft()
            if not self._replies:
                self._replies_drained.set()

    async def _publish_events(self, client: aiomqtt.Client) -> None:
        store = self._records.store
        topic = self.root + "events"
        while True:
            self._events_ready.clear()
            batch = await self._records.call(store.undelivered_events, 0, EVENT_BATCH)
            if not batch:
                await self._events_ready.wait()
                continue
            # Pipelined: paho sends in call order; every PUBACK is awaited before marking.
            async with asyncio.TaskGroup() as tg:
                for ev in batch:
                    tg.create_task(self._publish(client, topic, ev.payload, qos=1))
            await self._records.call(store.mark_delivered, batch[-1].seq)

    async def _publish_status(self, client: aiomqtt.Client) -> None:
        while True:
            await self._status_dirty.wait()
            self._status_dirty.clear()
            status = self._status if self._status is not None else self._dispatcher.target.status()
            body = {**status, "mode": self._mode, "ts": round(time.time(), 3)}
            data = json.dumps(body, separators=(",", ":"), default=str)
            await self._publish(client, self.root + "status", data, qos=1, retain=True)

    async def _publish_telemetry(self, client: aiomqtt.Client) -> None:
        while True:
            await self._telemetry_ready.wait()
            self._telemetry_ready.clear()
            data = self._telemetry
            if data is None:
                continue
            body = {**data, "ts": data.get("ts", round(time.time(), 3))}
            await self._publish(
                client,
                self.root + "telemetry",
                json.dumps(body, separators=(",", ":"), default=str),
                qos=0,
            )

    async def _watch_mode(self) -> None:
        store = self._records.store
        failing = False
        while True:
            await asyncio.sleep(MODE_POLL_S)
            try:
                mode = await self._records.call(store.get_mode)
            except Exception as exc:
                if not failing:
                    log.error("MES link: cannot read the control mode: %s", exc)
                    failing = True
                continue
            failing = False
            if mode != self._mode:
                log.warning("control mode is now %s", mode)
                self._mode = mode
                self._status_dirty.set()


def _who(props: Properties | None) -> str:
    """Who sent a command: the MQTT 5 user property ``who`` if the MES sets one."""
    for key, value in getattr(props, "UserProperty", None) or []:
        if key == "who" and isinstance(value, str) and value:
            return value[:64]
    return "mes"


def _busy_reply(command: str, payload: bytes, message: str) -> dict[str, Any] | None:
    try:
        rid = request_id_of(parse_payload(payload))
    except ValueError:
        return None
    if rid is None:
        return None
    return make_reply(rid, command, error=CommandRefused(BUSY, message))


@contextlib.asynccontextmanager
async def records_and_link(
    loaded: LoadedConfig, controller: CommandTarget
) -> AsyncIterator[tuple[Records, MesLink]]:
    """The record store, its thread and the MES link, as the supervisor runs them.

    Opens the store (migrating it), records jobs a crash left running as aborted (their
    ``job_aborted`` events go out first), then runs the link until the block ends. Hand
    ``records`` to the runtime as its event sink and ``link`` as its status sink.
    """
    cfg = loaded.config
    store = RecordStore(
        loaded.resolve(cfg.records.path), request_id_keep_s=cfg.mqtt.request_id_keep_s
    )
    try:
        aborted = store.mark_aborted_jobs_at_start()
        if aborted:
            log.warning("jobs cut short by the last stop, recorded aborted: %s", ", ".join(aborted))
        async with Records(store) as records:
            book = RecipeBook(loaded.resolve(cfg.records.recipes_dir), store)
            dispatcher = Dispatcher(controller, records, book, recipe_check(cfg))
            async with MesLink(loaded, records, dispatcher) as link:
                yield records, link
    finally:
        store.close()
