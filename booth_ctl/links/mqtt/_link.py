"""The MES link: the booth's side of the MQTT contract (aiomqtt 2.x, MQTT 5).

A translator over the command authority: it owns the connection and turns messages into
commands and replies into messages, nothing more. One connection at a time, re-made forever
with jittered backoff (aiomqtt does not reconnect by itself); on every connection the link
subscribes to its commands again, waits for the runtime to be ready, publishes its status and
then says it is ``online`` (retained; the last will says ``false``).

Its parts, one reason of change each: :mod:`._transport` (the client, backoff, publishing),
:mod:`._intake` (commands in, replies out) and :mod:`._publisher` (events, status, telemetry).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import aiomqtt
from paho.mqtt.reasoncodes import ReasonCode

from booth_ctl.commands import Authority, CommandTarget, open_authority
from booth_ctl.config._booth import LoadedConfig
from booth_ctl.links.mqtt._client import NODELAY
from booth_ctl.links.mqtt._intake import CommandIntake
from booth_ctl.links.mqtt._publisher import EVENT_BATCH, Publisher
from booth_ctl.links.mqtt._transport import (
    BoothClient,
    PublishRefused,
    SubscribeRefused,
    Wire,
    broker_unreachable,
    first_error,
    only_link_errors,
    read_password_file,
)
from booth_ctl.records import Records

log = logging.getLogger("booth_ctl.mes")

#: QoS 1 messages in flight at once on the connection (paho queues the rest, in order).
MAX_INFLIGHT = 200
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
        self._wire = Wire(cfg.mqtt, f"booth/{cfg.booth_id}/")
        self.root = self._wire.root
        self._identifier = identifier or f"booth-{cfg.booth_id}"
        self._records = records
        self._authority = authority
        self._in = CommandIntake(self._wire, authority)
        self._out = Publisher(self._wire, records, authority.target)
        self._password: str | None = None
        self._tls: aiomqtt.TLSParameters | None = None
        self._client: aiomqtt.Client | None = None
        self._tasks: list[asyncio.Task[None]] = []
        #: Set while a connection is up (subscribed, online published); for the runtime's health.
        self.connected = asyncio.Event()
        #: Set while subscribed to the commands (before ``online``: they are answered not_ready).
        self.subscribed = asyncio.Event()
        self.connections = 0

    @property
    def authority(self) -> Authority:
        """The command authority this link submits to (and every other link with it)."""
        return self._authority

    @property
    def refused_publishes(self) -> int:
        """QoS 1 publishes the broker refused (reason code >= 0x80), for health and tests."""
        return self._wire.refused_publishes

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> MesLink:
        m = self._wire.mqtt
        if m.password_file is not None:
            self._password = read_password_file(self._loaded.resolve(m.password_file))
        if m.tls_ca or m.tls_cert:
            self._tls = aiomqtt.TLSParameters(
                ca_certs=str(self._loaded.resolve(m.tls_ca)) if m.tls_ca else None,
                certfile=str(self._loaded.resolve(m.tls_cert)) if m.tls_cert else None,
                keyfile=str(self._loaded.resolve(m.tls_key)) if m.tls_key else None,
            )
        self._out.mode = await self._records.call(self._records.store.get_mode)
        self._in.reply_reader = await self._records.call(self._records.store.reply_reader)
        self._records.on_committed(self.events_available)
        self._tasks = [
            asyncio.create_task(self._connection_loop(), name="mes-connection"),
            asyncio.create_task(self._in.work(), name="mes-commands"),
            asyncio.create_task(self._out.watch_mode(), name="mes-mode"),
        ]
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            client = self._client
            if client is not None and self.connected.is_set():
                try:
                    async with asyncio.timeout(SHUTDOWN_FLUSH_S):
                        await self._in.replies_drained.wait()
                        # A clean stop sends no will: say offline ourselves.
                        await client.publish(self.root + "online", b"false", qos=1, retain=True)
                except (TimeoutError, aiomqtt.MqttError):
                    log.warning("MES link: could not say offline before stopping")
        finally:
            tasks = [*self._tasks, *self._in.door_tasks]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._tasks = []
            if self._in.reply_reader is not None:
                # Waits for a lookup still running on a worker thread, then closes.
                await asyncio.to_thread(self._in.reply_reader.close)
                self._in.reply_reader = None

    # ------------------------------------------------------------------ the scan's side

    def status_changed(self, status: dict[str, Any]) -> None:
        """The controller's status changed: publish it (retained). Never blocks."""
        self._out.status_changed(status)

    def telemetry(self, data: dict[str, Any]) -> None:
        """Publish these readings (QoS 0) if connected; only the newest waits. Never blocks."""
        self._out.telemetry(data)

    def events_available(self) -> None:
        """New events are in the outbox. Never blocks."""
        self._out.events_available()

    # ------------------------------------------------------------------ connection

    def _make_client(self) -> BoothClient:
        m = self._wire.mqtt
        client = BoothClient(
            m.host,
            m.port,
            username=m.username,
            password=self._password,
            identifier=self._identifier,
            protocol=aiomqtt.ProtocolVersion.V5,
            will=aiomqtt.Will(self._wire.root + "online", b"false", qos=1, retain=True),
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
        m = self._wire.mqtt
        backoff = self._wire.backoff()
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
                unreachable = up_since is None and broker_unreachable(exc)
                if not only_link_errors(exc):
                    log.error("MES link: internal error; reconnecting", exc_info=exc)
                elif down_since is None:
                    log.warning(
                        "MES link: broker %s:%d unreachable or lost (%s); retrying",
                        m.host,
                        m.port,
                        first_error(exc),
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
        topic = self._wire.root + "cmd/+"
        granted = await client.subscribe(topic, qos=1)
        for code in granted:
            failed = code.is_failure if isinstance(code, ReasonCode) else code >= 0x80
            if failed:
                # Without it no command reaches the booth: not online. Reconnecting (with the
                # backoff, which this short session does not reset) picks up a fixed ACL.
                self._wire.episodes.failing(
                    "subscribing to commands",
                    f"the broker refuses {topic}: {code}",
                    "not online; retrying (check the broker's ACL for the booth's user)",
                )
                raise SubscribeRefused(f"the broker refuses the subscription to {topic}: {code}")
        self._wire.episodes.working("subscribing to commands")

    async def _session(self, client: BoothClient) -> None:
        self._out.telemetry_ready.clear()  # readings from before the outage are stale
        self._out.events_ready.set()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._in.read(client), name="mes-read")
            tg.create_task(self._in.publish_replies(client), name="mes-replies")
            tg.create_task(self._out.publish_events(client), name="mes-events")
            tg.create_task(self._announce(client), name="mes-announce")

    async def _announce(self, client: BoothClient) -> None:
        """Say ``online`` once the runtime is ready and its first status is out; then keep the
        status and telemetry going. Commands before that are answered ``not_ready``."""
        await self._authority.ready.wait()
        self._out.status_dirty.clear()
        await self._out.send_status(client)
        try:
            await self._wire.publish(client, self.root + "online", b"true", qos=1, retain=True)
        except PublishRefused as exc:
            self._wire.refused("publishing online", exc, "the MES sees the booth offline")
        else:
            self._wire.episodes.working("publishing online")
        self.connections += 1
        self.connected.set()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._out.publish_status(client), name="mes-status")
            tg.create_task(self._out.publish_telemetry(client), name="mes-telemetry")


@contextlib.asynccontextmanager
async def records_and_link(
    loaded: LoadedConfig, controller: CommandTarget, ready: asyncio.Event
) -> AsyncIterator[tuple[Records, MesLink]]:
    """The record store, its thread, the command authority and the MES link, as the supervisor
    runs them (see :func:`booth_ctl.commands.open_authority`); ``link.authority`` is the one
    every other link submits to. Hand ``records`` to the runtime as its event sink and ``link``
    as its status sink.
    """
    async with (
        open_authority(loaded, controller, ready) as (records, authority),
        MesLink(loaded, records, authority) as link,
    ):
        yield records, link
