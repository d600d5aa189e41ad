"""The MES link over MQTT (CONTRACT section 3): status, telemetry, events, commands and replies.

A translator over the command authority: a ``cmd/<command>`` message becomes
``Authority.submit_raw(command, payload, Source("mqtt", ...))`` and its reply goes to ``reply``.
"""

from booth_ctl.links.mqtt._client import (
    NODELAY,
    NoReply,
    mes_side_client,
    mqtt_client,
    read_status,
    send_command,
    topic_root,
)
from booth_ctl.links.mqtt._link import (
    BROKER_DOWN_RETRY_S,
    STABLE_CONNECTION_S,
    MesLink,
    records_and_link,
)
from booth_ctl.links.mqtt._transport import BoothClient, read_password_file

__all__ = [
    "BROKER_DOWN_RETRY_S",
    "NODELAY",
    "STABLE_CONNECTION_S",
    "BoothClient",
    "MesLink",
    "NoReply",
    "mes_side_client",
    "mqtt_client",
    "read_password_file",
    "read_status",
    "records_and_link",
    "send_command",
    "topic_root",
]
