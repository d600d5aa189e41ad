"""The MES side of the contract, for the CLI: send a command, wait for its reply; read status."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from pathlib import Path
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from booth_ctl.config._booth import MqttConfig

#: Every MQTT socket of ours disables Nagle: QoS 1 round trips otherwise take ~40-90 ms.
NODELAY = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)
#: An MES-side client gives up connecting after this long.
MES_CONNECT_TIMEOUT_S = 5.0


class NoReply(Exception):
    """No reply (or no retained status) within the deadline."""


def topic_root(booth_id: str) -> str:
    return f"booth/{booth_id}/"


def mqtt_client(
    mqtt: MqttConfig,
    *,
    username: str | None = None,
    password_file: str | None = None,
    identifier: str | None = None,
    tls: aiomqtt.TLSParameters | None = None,
) -> aiomqtt.Client:
    """A client for the broker of ``mqtt``, as the MES or an operator (not the booth's user)."""
    password = None
    if password_file:
        password = Path(password_file).read_text(encoding="utf-8").strip()
    return mes_side_client(
        mqtt.host,
        mqtt.port,
        identifier=identifier or f"boothctl-{uuid.uuid4().hex[:12]}",
        username=username,
        password=password,
        tls_params=tls,
    )


def mes_side_client(
    host: str,
    port: int,
    *,
    identifier: str,
    username: str | None = None,
    password: str | None = None,
    session_expiry_s: int | None = None,
    **options: Any,
) -> aiomqtt.Client:
    """An MQTT 5 client on the MES side of the contract (the CLI, an MES of the tests or the
    benchmarks), without Nagle. With ``session_expiry_s`` the broker keeps its session (and the
    QoS 1 messages queued in it) that long across outages; without, each connection starts clean.
    ``options`` go to ``aiomqtt.Client`` as they are."""
    props = None
    if session_expiry_s is not None:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = session_expiry_s
    return aiomqtt.Client(
        host,
        port,
        protocol=aiomqtt.ProtocolVersion.V5,
        socket_options=NODELAY,
        timeout=MES_CONNECT_TIMEOUT_S,
        identifier=identifier,
        username=username,
        password=password,
        clean_start=session_expiry_s is None,
        properties=props,
        **options,
    )


async def send_command(
    client: aiomqtt.Client,
    booth_id: str,
    command: str,
    args: dict[str, Any],
    timeout_s: float,
) -> dict[str, Any]:
    """Publish ``cmd/<command>`` and return the reply with the same ``request_id``."""
    root = topic_root(booth_id)
    payload = dict(args)
    payload.setdefault("request_id", uuid.uuid4().hex)
    request_id = payload["request_id"]
    await client.subscribe(root + "reply", qos=1)
    await client.publish(root + f"cmd/{command}", json.dumps(payload), qos=1)
    try:
        async with asyncio.timeout(timeout_s):
            async for message in client.messages:
                try:
                    reply = json.loads(bytes(message.payload))
                except (TypeError, ValueError):
                    continue
                if isinstance(reply, dict) and reply.get("request_id") == request_id:
                    return reply
    except TimeoutError:
        pass
    raise NoReply(
        f"no reply to {command} (request_id {request_id}) on {root}reply within {timeout_s} s"
    )


async def read_status(client: aiomqtt.Client, booth_id: str, timeout_s: float) -> dict[str, Any]:
    """The retained ``status`` of the booth (and whether it is online)."""
    root = topic_root(booth_id)
    await client.subscribe(root + "status", qos=1)
    await client.subscribe(root + "online", qos=1)
    status: dict[str, Any] | None = None
    online: bool | None = None
    try:
        async with asyncio.timeout(timeout_s):
            async for message in client.messages:
                body = json.loads(bytes(message.payload))
                if message.topic.matches(root + "status"):
                    status = body
                else:
                    online = bool(body)
                if status is not None and online is not None:
                    break
    except TimeoutError:
        pass
    if status is None:
        raise NoReply(f"no retained status on {root}status within {timeout_s} s")
    return {**status, "online": online if online is not None else False}
