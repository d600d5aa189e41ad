"""Command intake: commands off the connection into a bounded inbox, run one at a time through
the command authority, their replies queued until a connection can carry them.

The worker outlives connections, so a command is never cut in half by a lost link. No reply is
ever dropped: the inbox and the reply queue are bounded together (see
:meth:`CommandIntake._wait_for_reply_room`).
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
from typing import Any

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from booth_ctl.commands import (
    BUSY,
    Authority,
    CommandRefused,
    Source,
    make_reply,
    request_id_of_payload,
)
from booth_ctl.links.mqtt._transport import BoothClient, PublishRefused, Wire
from booth_ctl.records import ReplyReader

log = logging.getLogger("booth_ctl.mes")

#: A reply may go to ``reply`` and to the request's MQTT 5 Response Topic: room for both is kept.
REPLY_COPIES = 2
#: A repeat of a request_id arriving while the inbox is full is looked up (its first reply sent
#: back) by at most this many lookups at once, each given this long; otherwise ``busy``.
DOOR_LOOKUPS_MAX = 16
DOOR_LOOKUP_S = 0.5


class CommandIntake:
    """The link's commands and replies; ``read`` runs per connection, ``work`` for the link's
    life, ``publish_replies`` per connection."""

    def __init__(self, wire: Wire, authority: Authority) -> None:
        self.wire = wire
        self._authority = authority
        self._inbox: asyncio.Queue[tuple[str, bytes, Properties | None]] = asyncio.Queue(
            wire.mqtt.command_queue_max
        )
        self._replies: collections.deque[tuple[str, bytes, Properties | None]] = collections.deque()
        #: Replies still to come: commands taken into the inbox and not answered yet, and
        #: lookups at a full inbox's door. Room for them is kept in the reply queue.
        self._owed = 0
        self._reply_room = asyncio.Event()
        self.door_tasks: set[asyncio.Task[None]] = set()
        self.reply_reader: ReplyReader | None = None
        self._replies_ready = asyncio.Event()
        self.replies_drained = asyncio.Event()
        self.replies_drained.set()

    async def read(self, client: BoothClient) -> None:
        prefix = self.wire.root + "cmd/"
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
        return len(self._replies) + REPLY_COPIES * (self._owed + 1) <= self.wire.mqtt.queue_max

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
        self.wire.episodes.failing(
            "the reply queue is full",
            f"{len(self._replies)} replies wait to be published",
            "not taking commands until the broker takes replies again",
        )
        while not self._has_reply_room():
            self._reply_room.clear()
            await self._reply_room.wait()
        self.wire.episodes.working("the reply queue is full")

    def _at_a_full_inbox(self, command: str, payload: bytes, props: Properties | None) -> None:
        rid = request_id_of_payload(payload)
        if rid is None or len(rid) > 64:
            self._refuse_busy(command, payload, props)
            return
        if self.reply_reader is None or len(self.door_tasks) >= DOOR_LOOKUPS_MAX:
            self._refuse_busy(command, payload, props)
            return
        # A repeat of an answered request gets its first reply even now: looked up on a
        # connection of its own on a worker thread (the store's may wait on a write), with a
        # deadline, while the reader goes on.
        self._owed += 1
        task = asyncio.create_task(
            self._answer_at_the_door(command, payload, rid, props), name="mes-door-lookup"
        )
        self.door_tasks.add(task)
        task.add_done_callback(self.door_tasks.discard)

    async def _answer_at_the_door(
        self, command: str, payload: bytes, rid: str, props: Properties | None
    ) -> None:
        reader = self.reply_reader
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
        n = self.wire.mqtt.command_queue_max
        reply = _busy_reply(
            command, payload, f"{n} commands are already waiting; try again shortly"
        )
        if reply is not None:
            self._queue_reply(reply, props)

    async def work(self) -> None:
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

    def _queue_reply(self, reply: dict[str, Any], props: Properties | None) -> None:
        data = json.dumps(reply, separators=(",", ":"), default=str).encode()
        corr = getattr(props, "CorrelationData", None) if props is not None else None
        out_props: Properties | None = None
        if corr is not None:
            out_props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            out_props.CorrelationData = corr
        # Never dropped, whatever the queue holds: room for it was kept (_wait_for_reply_room).
        self._replies.append((self.wire.root + "reply", data, out_props))
        response_topic = getattr(props, "ResponseTopic", None) if props is not None else None
        if (
            isinstance(response_topic, str)
            and response_topic
            and not response_topic.startswith(self.wire.root + "cmd/")
            and "+" not in response_topic
            and "#" not in response_topic
        ):
            self._replies.append((response_topic, data, out_props))
        self.replies_drained.clear()
        self._replies_ready.set()

    async def publish_replies(self, client: BoothClient) -> None:
        backoff = self.wire.backoff()
        reply_topic = self.wire.root + "reply"
        while True:
            if not self._replies:
                self._replies_ready.clear()
                await self._replies_ready.wait()
                continue
            topic, data, props = self._replies[0]
            try:
                await self.wire.publish(client, topic, data, qos=1, properties=props)
            except PublishRefused as exc:
                if topic == reply_topic:
                    # The one reply the contract promises: kept, first in line, and retried.
                    self.wire.refused("publishing replies", exc)
                    await asyncio.sleep(backoff.next_s())
                    continue
                # A copy to the request's own Response Topic; the reply went out on `reply`.
                self.wire.refused("publishing replies to response topics", exc, "copy not sent")
            else:
                self.wire.episodes.working(
                    "publishing replies" if topic == reply_topic
                    else "publishing replies to response topics"
                )
                backoff.reset()
            self._replies.popleft()
            self._reply_room.set()
            if not self._replies:
                self.replies_drained.set()


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
