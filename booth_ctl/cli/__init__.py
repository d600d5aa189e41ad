"""``boothctl``: the daemon's entry point, the MQTT tools, the watch view and offline commands.

Imports ``config``, ``records``, ``commands`` (its rules, for ``boothctl mode``), the MQTT
link's client helpers and the runtime (``boothctl run``).
"""

from booth_ctl.cli._main import OneLineFormatter, format_status, main

__all__ = ["OneLineFormatter", "format_status", "main"]
