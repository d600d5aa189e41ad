"""The MQTT session's parts: a client that honours PUBACK reason codes, the backoff, the episode
log, and the one way every part of the link publishes (:class:`Wire`).

aiomqtt 2.x ignores the reason codes of PUBACK and SUBACK: a QoS 1 publish the broker refuses
(MQTT 5 reason code >= 0x80, e.g. 0x87 not authorized by its ACL) returns as if delivered.
:class:`BoothClient` reads them, so a refused event stays in the outbox and a refused reply stays
queued; both are retried with backoff and the refusal is logged once per episode.
"""

from __future__ import annotations

import asyncio
import logging
import random
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from booth_ctl.config._booth import MqttConfig
from drivers import ConfigError

log = logging.getLogger("booth_ctl.mes")


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


class Backoff:
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


class Episodes:
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


def first_error(exc: BaseException) -> BaseException:
    """The first leaf of a (nested) exception group, for logging a lost connection once."""
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


def broker_unreachable(exc: BaseException) -> bool:
    """The connection could not be made at all (not a CONNACK refusal: the broker answered)."""
    if isinstance(exc, BaseExceptionGroup):
        return all(broker_unreachable(e) for e in exc.exceptions)
    return isinstance(exc, aiomqtt.MqttError | OSError) and not isinstance(
        exc, MqttConnectError
    )


def only_link_errors(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return all(only_link_errors(e) for e in exc.exceptions)
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


@dataclass
class Wire:
    """What the link's parts share: the topic root, the settings, one episode log, and the
    count of refused publishes."""

    mqtt: MqttConfig
    root: str
    episodes: Episodes = field(default_factory=Episodes)
    #: QoS 1 publishes the broker refused (reason code >= 0x80), for health and tests.
    refused_publishes: int = 0

    async def publish(
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
            ack_timeout_s=self.mqtt.publish_timeout_s,
        )

    def refused(self, what: str, exc: PublishRefused, advice: str = "") -> None:
        self.refused_publishes += 1
        self.episodes.failing(
            what,
            f"the broker refuses {exc}",
            advice or "kept and retried (check the broker's ACL for the booth's user)",
        )

    def backoff(self) -> Backoff:
        return Backoff(self.mqtt.reconnect_min_s, self.mqtt.reconnect_max_s)
