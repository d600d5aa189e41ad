"""What the booth tells the MES by itself: events from the record store's outbox, the retained
status, telemetry, and the control mode in the status.

Events go out in ``seq`` order, pipelined, and are marked delivered only once the broker
acknowledged them (PUBACK); after a reconnect the link resends from the oldest unacknowledged
one, so the MES sees every event at least once, in order. The scan never waits on any of it: it
only calls the non-blocking :meth:`Publisher.status_changed`, :meth:`Publisher.telemetry` and
:meth:`Publisher.events_available`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from booth_ctl.commands import CommandTarget
from booth_ctl.links.mqtt._transport import BoothClient, PublishRefused, Wire
from booth_ctl.records import Records
from booth_ctl.records._mode_watch import follow_mode

log = logging.getLogger("booth_ctl.mes")

#: Events published per round before their acknowledgements are awaited together.
EVENT_BATCH = 200
#: How often the control mode is read back from the store (another process may switch it).
MODE_POLL_S = 1.0


class Publisher:
    def __init__(self, wire: Wire, records: Records, target: CommandTarget) -> None:
        self.wire = wire
        self._records = records
        self._target = target
        self.events_ready = asyncio.Event()
        self._status: dict[str, Any] | None = None
        self.status_dirty = asyncio.Event()
        self._telemetry: dict[str, Any] | None = None
        self.telemetry_ready = asyncio.Event()
        self.mode: str | None = None

    def status_changed(self, status: dict[str, Any]) -> None:
        """The controller's status changed: publish it (retained). Never blocks."""
        self._status = status
        self.status_dirty.set()

    def telemetry(self, data: dict[str, Any]) -> None:
        """Publish these readings (QoS 0) if connected; only the newest waits. Never blocks."""
        self._telemetry = data
        self.telemetry_ready.set()

    def events_available(self) -> None:
        """New events are in the outbox. Never blocks."""
        self.events_ready.set()

    async def publish_events(self, client: BoothClient) -> None:
        store = self._records.store
        topic = self.wire.root + "events"
        backoff = self.wire.backoff()
        while True:
            self.events_ready.clear()
            batch = await self._records.call(store.undelivered_events, 0, EVENT_BATCH)
            if not batch:
                await self.events_ready.wait()
                continue
            # Pipelined: paho sends in call order; every PUBACK is awaited before marking.
            results = await asyncio.gather(
                *(self.wire.publish(client, topic, ev.payload, qos=1) for ev in batch),
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
                self.wire.episodes.working("publishing events")
                backoff.reset()
                continue
            failure = results[accepted]
            if not isinstance(failure, PublishRefused):
                assert isinstance(failure, BaseException)
                raise failure  # the link failed: the session ends, the link reconnects
            self.wire.refused(
                "publishing events", failure, "events stay in the outbox and are retried"
            )
            await asyncio.sleep(backoff.next_s())

    async def publish_status(self, client: BoothClient) -> None:
        while True:
            await self.status_dirty.wait()
            self.status_dirty.clear()
            await self.send_status(client)

    async def send_status(self, client: BoothClient) -> None:
        status = self._status if self._status is not None else self._target.status()
        body = {**status, "mode": self.mode, "ts": round(time.time(), 3)}
        data = json.dumps(body, separators=(",", ":"), default=str)
        try:
            await self.wire.publish(client, self.wire.root + "status", data, qos=1, retain=True)
        except PublishRefused as exc:
            # The next change (or connection) publishes the status anew.
            self.wire.refused("publishing status", exc, "the next change tries again")
        else:
            self.wire.episodes.working("publishing status")

    async def publish_telemetry(self, client: BoothClient) -> None:
        while True:
            await self.telemetry_ready.wait()
            self.telemetry_ready.clear()
            data = self._telemetry
            if data is None:
                continue
            body = {**data, "ts": data.get("ts", round(time.time(), 3))}
            await self.wire.publish(
                client,
                self.wire.root + "telemetry",
                json.dumps(body, separators=(",", ":"), default=str),
                qos=0,
            )

    async def watch_mode(self) -> None:
        await follow_mode(self._records, "MES link", self._mode_read, MODE_POLL_S)

    def _mode_read(self, mode: str) -> None:
        if mode != self.mode:
            log.warning("control mode is now %s", mode)
            self.mode = mode
            self.status_dirty.set()
