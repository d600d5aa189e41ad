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
outgoing queue until a connection can carry it. No reply is ever dropped: the inbox and the reply
queue are bounded together (see :meth:`MesLink._wait_for_reply_room`).

aiomqtt 2.x ignores the reason codes of PUBACK and SUBACK: a QoS 1 publish the broker refuses
(MQTT 5 reason code >= 0x80, e.g. 0x87 not authorized by its ACL) returns as if delivered.
:class:`BoothClient` reads them, so a refused event stays in the outbox and a refused reply stays
queued; both are retried with backoff and the refusal is logged once per episode.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import random
import stat
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from booth_ctl.commands import (
    BUSY,
    Authority,
    CommandRefused,
    CommandTarget,
    RecipeBook,
    Source,
    make_reply,
    recipe_check,
    request_id_of_payload,
)
from booth_ctl.config._booth import LoadedConfig
from booth_ctl.links.mqtt._client import NODELAY
from booth_ctl.records import Records, RecordStore, ReplyReader
from drivers import ConfigError

log = logging.getLogger("booth_ctl.mes")

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
#: The reconnect backoff starts again from ``reconnect_min_s`` only after a connection stayed up
#: this long: a session that fails at once (refused subscription, a second client taking over
#: the client id) must not reconnect at the shortest interval forever.
STABLE_CONNECTION_S = 10.0
#: While the broker does not answer at all, connection attempts are at most this far apart (the
#: backoff up to ``reconnect_max_s`` is for a broker that answers and refuses the session).
BROKER_DOWN_RETRY_S = 0.5
#: A reply may go to ``reply`` and to the request's MQTT 5 Response Topic: room for both is kept.
REPLY_COPIES = 2
#: A repeat of a request_id arriving while the inbox is full is looked up (its first reply sent
#: back) by at most this many lookups at once, each given this long; otherwise ``busy``.
DOOR_LOOKUPS_MAX = 16
DOOR_LOOKUP_S = 0.5


class LinkDown(Exception):
    """The connection to the broker was lost or could not be made."""


class PublishRefused(Exception):
    """The broker acknowledged a QoS 1 publish with a failure reason code (>= 0x80)."""

    def __init__(self, topic: str, reason: ReasonCode) -> None:
        super().__init__(f"{topic}: {reason} (reason code 0x{reason.value:02x})")
        self.topic = topic
        self.reason = reason


class SubscribeRefused(LinkDown):
    """The broker refused the subscription to the commands (SUBACK reason code >= 0x80)."""


class BoothClient(aiomqtt.Client):
    """aiomqtt's client, made to honour the reason code of a PUBACK.

    aiomqtt 2.x (``_on_publish``) sets the waiting publish's event whatever the reason code, and
    its ``publish`` does not tell the message id; :meth:`publish_acked` is its ``publish``
    (paho's publish, then wait for the acknowledgement) that also raises
    :class:`PublishRefused` for a refusal. Relies on aiomqtt 2.x internals (``_client``,
    ``_pending_publishes``, ``_pending_call``, ``_wait_for``), pinned by ``aiomqtt<3``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Message id -> the failure reason code of its PUBACK, until its publisher reads it.
        self._refused: dict[int, ReasonCode] = {}

    def _on_publish(
        self,
        client: paho.Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties,
    ) -> None:
        # Only for a publish still waiting: a late PUBACK must not be read by a later message
        # that reuses the id.
        if reason_code.is_failure and mid in self._pending_publishes:
            self._refused[mid] = reason_code
        super()._on_publish(client, userdata, mid, reason_code, properties)

    async def publish_acked(
        self,
        topic: str,
        payload: bytes | str,
        *,
        qos: int,
        retain: bool = False,
        properties: Properties | None = None,
        ack_timeout_s: float | None = None,
    ) -> None:
        """Publish; for QoS 1 return once the broker accepted it, raise PublishRefused if it
        refused it, aiomqtt.MqttError if the link failed or the acknowledgement timed out."""
        info = self._client.publish(topic, payload, qos, retain, properties)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise aiomqtt.MqttCodeError(info.rc, "Could not publish message")
        if info.is_published():
            return  # QoS 0: written, nothing to wait for
        confirmation = asyncio.Event()
        try:
            with self._pending_call(info.mid, confirmation, self._pending_publishes):
                await self._wait_for(confirmation.wait(), timeout=ack_timeout_s)
        finally:
            reason = self._refused.pop(info.mid, None)
        if reason is not None:
            raise PublishRefused(topic, reason)


class _Backoff:
    """Jittered exponential waits between ``min_s`` and ``max_s``."""

    def __init__(self, min_s: float, max_s: float) -> None:
        self.min_s = min_s
        self.max_s = max_s
        self.attempt = 0

    def next_s(self) -> float:
        cap = min(self.max_s, self.min_s * 2.0 ** min(self.attempt, 16))
        self.attempt += 1
        # Equal jitter: never hammer the broker in lock step with other booths.
        return cap / 2 + random.uniform(0, cap / 2)

    def reset(self) -> None:
        self.attempt = 0


class _Episodes:
    """Logs a kind of trouble once when it starts and once when it is over, not every retry."""

    def __init__(self) -> None:
        self._active: dict[str, str] = {}

    def failing(self, what: str, why: object, advice: str = "") -> None:
        if what not in self._active:
            self._active[what] = str(why)
            log.error("MES link: %s: %s%s", what, why, f"; {advice}" if advice else "")

    def working(self, what: str) -> None:
        if self._active.pop(what, None) is not None:
            log.warning("MES link: %s: works again", what)


def _first_error(exc: BaseException) -> BaseException:
    """The first leaf of a (nested) exception group, for logging a lost connection once."""
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


def _broker_unreachable(exc: BaseException) -> bool:
    """The connection could not be made at all (not a CONNACK refusal: the broker answered)."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_broker_unreachable(e) for e in exc.exceptions)
    return isinstance(exc, aiomqtt.MqttError | OSError) and not isinstance(
        exc, MqttConnectError
    )


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
        authority: Authority,
        *,
        identifier: str | None = None,
    ) -> None:
        cfg = loaded.config
        self._loaded = loaded
        self._mqtt = cfg.mqtt
        self.root = f"booth/{cfg.booth_id}/"
        self._identifier = identifier or f"booth-{cfg.booth_id}"
        self._records = records
        self._authority = authority
        self._password: str | None = None
        self._tls: aiomqtt.TLSParameters | None = None

        self._inbox: asyncio.Queue[tuple[str, bytes, Properties | None]] = asyncio.Queue(
            self._mqtt.command_queue_max
        )
        self._replies: collections.deque[tuple[str, bytes, Properties | None]] = collections.deque()
        #: Replies still to come: commands taken into the inbox and not answered yet, and
        #: lookups at a full inbox's door. Room for them is kept in the reply queue.
        self._owed = 0
        self._reply_room = asyncio.Event()
        self._door_tasks: set[asyncio.Task[None]] = set()
        self._reply_reader: ReplyReader | None = None
        self._episodes = _Episodes()
        #: QoS 1 publishes the broker refused (reason code >= 0x80), for health and tests.
        self.refused_publishes = 0
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
        #: Set while subscribed to the commands (before ``online``: they are answered not_ready).
        self.subscribed = asyncio.Event()
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
        self._reply_reader = await self._records.call(self._records.store.reply_reader)
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
            tasks = [*self._tasks, *self._door_tasks]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._tasks = []
            if self._reply_reader is not None:
                # Waits for a lookup still running on a worker thread, then closes.
                await asyncio.to_thread(self._reply_reader.close)
                self._reply_reader = None

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

    def _make_client(self) -> BoothClient:
        m = self._mqtt
        client = BoothClient(
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
        backoff = _Backoff(m.reconnect_min_s, m.reconnect_max_s)
        down_since: float | None = None
        while True:
            client = self._make_client()
            up_since: float | None = None
            unreachable = False
            try:
                async with client:
                    self._client = client
                    await self._subscribe(client)
                    self.subscribed.set()
                    up_since = time.monotonic()
                    if down_since is not None:
                        log.warning(
                            "MES link: connected to %s:%d again after %.1f s",
                            m.host,
                            m.port,
                            up_since - down_since,
                        )
                    else:
                        log.info("MES link: connected to %s:%d", m.host, m.port)
                    down_since = None
                    await self._session(client)
            except SubscribeRefused:
                pass  # logged once per episode by _subscribe
            except Exception as exc:
                unreachable = up_since is None and _broker_unreachable(exc)
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
                self.subscribed.clear()
                self._client = None
                await self._reap(client)
            now = time.monotonic()
            if down_since is None:
                down_since = now
            # Only a connection that stayed up a while starts the backoff again: one that fails
            # at once would otherwise be re-made at reconnect_min_s forever.
            if up_since is not None and now - up_since >= STABLE_CONNECTION_S:
                backoff.reset()
            wait_s = backoff.next_s()
            if unreachable:
                # Nothing answered (refused or timed out): an attempt costs the broker nothing,
                # so the booth is back within a second of it, however long it was away.
                wait_s = min(wait_s, BROKER_DOWN_RETRY_S)
            await asyncio.sleep(wait_s)

    @staticmethod
    async def _reap(client: aiomqtt.Client) -> None:
        # aiomqtt cancels its keepalive task by a callback scheduled at socket close; wait for
        # it so that nothing outlives the connection.
        misc = getattr(client, "_misc_task", None)
        if isinstance(misc, asyncio.Task) and not misc.done():
            misc.cancel()
            await asyncio.gather(misc, return_exceptions=True)

    async def _subscribe(self, client: BoothClient) -> None:
        topic = self.root + "cmd/+"
        granted = await client.subscribe(topic, qos=1)
        for code in granted:
            failed = code.is_failure if isinstance(code, ReasonCode) else code >= 0x80
            if failed:
                # Without it no command reaches the booth: not online. Reconnecting (with the
                # backoff, which this short session does not reset) picks up a fixed ACL.
                self._episodes.failing(
                    "subscribing to commands",
                    f"the broker refuses {topic}: {code}",
                    "not online; retrying (check the broker's ACL for the booth's user)",
                )
                raise SubscribeRefused(f"the broker refuses the subscription to {topic}: {code}")
        self._episodes.working("subscribing to commands")

    async def _session(self, client: BoothClient) -> None:
        self._telemetry_ready.clear()  # readings from before the outage are stale
        self._events_ready.set()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._read(client), name="mes-read")
            tg.create_task(self._publish_replies(client), name="mes-replies")
            tg.create_task(self._publish_events(client), name="mes-events")
            tg.create_task(self._announce(client), name="mes-announce")

    async def _announce(self, client: BoothClient) -> None:
        """Say ``online`` once the runtime is ready and its first status is out; then keep the
        status and telemetry going. Commands before that are answered ``not_ready``."""
        await self._authority.ready.wait()
        self._status_dirty.clear()
        await self._send_status(client)
        try:
            await self._publish(client, self.root + "online", b"true", qos=1, retain=True)
        except PublishRefused as exc:
            self._refused("publishing online", exc, "the MES sees the booth offline")
        else:
            self._episodes.working("publishing online")
        self.connections += 1
        self.connected.set()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._publish_status(client), name="mes-status")
            tg.create_task(self._publish_telemetry(client), name="mes-telemetry")

    async def _publish(
        self,
        client: BoothClient,
        topic: str,
        payload: bytes | str,
        *,
        qos: int,
        retain: bool = False,
        properties: Properties | None = None,
    ) -> None:
        """Publish; raises PublishRefused if the broker refuses it (QoS 1)."""
        await client.publish_acked(
            topic,
            payload,
            qos=qos,
            retain=retain,
            properties=properties,
            ack_timeout_s=self._mqtt.publish_timeout_s,
        )

    # ------------------------------------------------------------------ inbound

    async def _read(self, client: BoothClient) -> None:
        prefix = self.root + "cmd/"
        async for message in client.messages:
            topic = message.topic.value
            if not topic.startswith(prefix):
                continue
            command = topic[len(prefix) :]
            payload = message.payload if isinstance(message.payload, bytes) else b""
            await self._wait_for_reply_room()
            try:
                self._inbox.put_nowait((command, payload, message.properties))
            except asyncio.QueueFull:
                self._at_a_full_inbox(command, payload, message.properties)
            else:
                self._owed += 1

    def _has_reply_room(self) -> bool:
        return len(self._replies) + REPLY_COPIES * (self._owed + 1) <= self._mqtt.queue_max

    async def _wait_for_reply_room(self) -> None:
        """Wait until the reply queue has room for one more reply besides those owed.

        Replies are never dropped (every command gets exactly one). So every command taken into
        the inbox, and every lookup at its door, is owed a reply for which room is kept in the
        reply queue (``mqtt.queue_max``); the reader takes the next message off the connection
        only once there is room for its reply too, be it the command's or ``busy``. Room runs
        out only while the broker does not take replies (refuses them, or stalls); the reader
        then waits, further commands wait unread on the connection (in the client's incoming
        queue), and they are taken as soon as replies go out again. (Dropping the oldest reply
        instead, as this link once did, broke "every command gets exactly one reply" silently;
        refusing the command ``busy`` would need room for that reply just the same.)
        """
        if self._has_reply_room():
            return
        self._episodes.failing(
            "the reply queue is full",
            f"{len(self._replies)} replies wait to be published",
            "not taking commands until the broker takes replies again",
        )
        while not self._has_reply_room():
            self._reply_room.clear()
            await self._reply_room.wait()
        self._episodes.working("the reply queue is full")

    def _at_a_full_inbox(self, command: str, payload: bytes, props: Properties | None) -> None:
        rid = request_id_of_payload(payload)
        if rid is None or len(rid) > 64:
            self._refuse_busy(command, payload, props)
            return
        if self._reply_reader is None or len(self._door_tasks) >= DOOR_LOOKUPS_MAX:
            self._refuse_busy(command, payload, props)
            return
        # A repeat of an answered request gets its first reply even now: looked up on a
        # connection of its own on a worker thread (the store's may wait on a write), with a
        # deadline, while the reader goes on.
        self._owed += 1
        task = asyncio.create_task(
            self._answer_at_the_door(command, payload, rid, props), name="mes-door-lookup"
        )
        self._door_tasks.add(task)
        task.add_done_callback(self._door_tasks.discard)

    async def _answer_at_the_door(
        self, command: str, payload: bytes, rid: str, props: Properties | None
    ) -> None:
        reader = self._reply_reader
        first: dict[str, Any] | None = None
        try:
            if reader is not None:
                async with asyncio.timeout(DOOR_LOOKUP_S):
                    first = await asyncio.to_thread(reader.first_reply, rid)
        except Exception as exc:  # a timeout or a store error: then busy, as without lookup
            log.debug("MES link: no lookup of request_id %s at a full inbox: %r", rid, exc)
        finally:
            self._owed -= 1
        if first is not None:
            self._queue_reply(first, props)
        else:
            self._refuse_busy(command, payload, props)
        self._reply_room.set()

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
                reply = await self._authority.submit_raw(
                    command, payload, Source("mqtt", user=_who(props))
                )
            except Exception as exc:
                # The store (or a bug) failed before the command could be judged: nothing ran,
                # so the MES may simply retry.
                log.exception("MES link: command %s could not be processed", command)
                reply = _busy_reply(command, payload, f"the booth cannot take commands now: {exc}")
            self._owed -= 1
            if reply is not None:
                self._queue_reply(reply, props)
            self._reply_room.set()

    # ------------------------------------------------------------------ outbound

    def _queue_reply(self, reply: dict[str, Any], props: Properties | None) -> None:
        data = json.dumps(reply, separators=(",", ":"), default=str).encode()
        corr = getattr(props, "CorrelationData", None) if props is not None else None
        out_props: Properties | None = None
        if corr is not None:
            out_props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            out_props.CorrelationData = corr
        # Never dropped, whatever the queue holds: room for it was kept (_wait_for_reply_room).
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

    async def _publish_replies(self, client: BoothClient) -> None:
        backoff = _Backoff(self._mqtt.reconnect_min_s, self._mqtt.reconnect_max_s)
        reply_topic = self.root + "reply"
        while True:
            if not self._replies:
                self._replies_ready.clear()
                await self._replies_ready.wait()
                continue
            topic, data, props = self._replies[0]
            try:
                await self._publish(client, topic, data, qos=1, properties=props)
            except PublishRefused as exc:
                if topic == reply_topic:
                    # The one reply the contract promises: kept, first in line, and retried.
                    self._refused("publishing replies", exc)
                    await asyncio.sleep(backoff.next_s())
                    continue
                # A copy to the request's own Response Topic; the reply went out on `reply`.
                self._refused("publishing replies to response topics", exc, "copy not sent")
            else:
                self._episodes.working(
                    "publishing replies" if topic == reply_topic
                    else "publishing replies to response topics"
                )
                backoff.reset()
            self._replies.popleft()
            self._reply_room.set()
            if not self._replies:
                self._replies_drained.set()

    def _refused(self, what: str, exc: PublishRefused, advice: str = "") -> None:
        self.refused_publishes += 1
        self._episodes.failing(
            what,
            f"the broker refuses {exc}",
            advice or "kept and retried (check the broker's ACL for the booth's user)",
        )

    async def _publish_events(self, client: BoothClient) -> None:
        store = self._records.store
        topic = self.root + "events"
        backoff = _Backoff(self._mqtt.reconnect_min_s, self._mqtt.reconnect_max_s)
        while True:
            self._events_ready.clear()
            batch = await self._records.call(store.undelivered_events, 0, EVENT_BATCH)
            if not batch:
                await self._events_ready.wait()
                continue
            # Pipelined: paho sends in call order; every PUBACK is awaited before marking.
            results = await asyncio.gather(
                *(self._publish(client, topic, ev.payload, qos=1) for ev in batch),
                return_exceptions=True,
            )
            # Delivered: the run of accepted events from the start of the batch. From the first
            # one refused on, everything stays in the outbox and is sent again, in order.
            accepted = 0
            for res in results:
                if res is not None:
                    break
                accepted += 1
            if accepted:
                await self._records.call(store.mark_delivered, batch[accepted - 1].seq)
            if accepted == len(batch):
                self._episodes.working("publishing events")
                backoff.reset()
                continue
            failure = results[accepted]
            if not isinstance(failure, PublishRefused):
                assert isinstance(failure, BaseException)
                raise failure  # the link failed: the session ends, the link reconnects
            self._refused("publishing events", failure, "events stay in the outbox and are retried")
            await asyncio.sleep(backoff.next_s())

    async def _publish_status(self, client: BoothClient) -> None:
        while True:
            await self._status_dirty.wait()
            self._status_dirty.clear()
            await self._send_status(client)

    async def _send_status(self, client: BoothClient) -> None:
        status = self._status if self._status is not None else self._authority.target.status()
        body = {**status, "mode": self._mode, "ts": round(time.time(), 3)}
        data = json.dumps(body, separators=(",", ":"), default=str)
        try:
            await self._publish(client, self.root + "status", data, qos=1, retain=True)
        except PublishRefused as exc:
            # The next change (or connection) publishes the status anew.
            self._refused("publishing status", exc, "the next change tries again")
        else:
            self._episodes.working("publishing status")

    async def _publish_telemetry(self, client: BoothClient) -> None:
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


def _who(props: Properties | None) -> str | None:
    """Who sent a command: the MQTT 5 user property ``who`` if the MES sets one."""
    for key, value in getattr(props, "UserProperty", None) or []:
        if key == "who" and isinstance(value, str) and value:
            return value[:64]
    return None


def _busy_reply(command: str, payload: bytes, message: str) -> dict[str, Any] | None:
    rid = request_id_of_payload(payload)
    if rid is None:
        return None
    return make_reply(rid, command, error=CommandRefused(BUSY, message))


@contextlib.asynccontextmanager
async def records_and_link(
    loaded: LoadedConfig, controller: CommandTarget, ready: asyncio.Event
) -> AsyncIterator[tuple[Records, MesLink]]:
    """The record store, its thread and the MES link, as the supervisor runs them.

    Opens the store (migrating it), records jobs a crash left running as aborted (their
    ``job_aborted`` events go out first), then runs the link until the block ends. Hand
    ``records`` to the runtime as its event sink and ``link`` as its status sink; set ``ready``
    once the runtime's first complete process image and status are out (until then commands
    are refused ``not_ready`` and the link does not say ``online``).
    """
    cfg = loaded.config
    store = RecordStore(
        loaded.resolve(cfg.records.path), request_id_keep_s=cfg.mqtt.request_id_keep_s
    )
    try:
        aborted = store.mark_aborted_jobs_at_start()
        if aborted:
            log.warning("jobs cut short by the last stop, recorded aborted: %s", ", ".join(aborted))
        cut_short = store.settle_commands_at_start()
        if cut_short:
            log.warning(
                "commands cut short by the last stop (a repeat is told so, not run again): "
                "request_id %s", ", ".join(cut_short),
            )
        async with Records(store) as records:
            book = RecipeBook(loaded.resolve(cfg.records.recipes_dir), store)
            authority = Authority(controller, records, book, recipe_check(cfg), ready=ready)
            async with MesLink(loaded, records, authority) as link:
                yield records, link
    finally:
        store.close()
