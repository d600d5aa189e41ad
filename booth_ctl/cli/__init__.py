"""``boothctl``: the daemon's entry point, the MQTT tools, the watch view and offline commands.

Imports ``config``, ``records``, ``commands`` (its rules, for ``boothctl mode``), the MQTT
link's client helpers and the runtime (``boothctl run``).
"""

from booth_ctl.cli._main import main
from booth_ctl.cli._mes import format_status
from booth_ctl.cli._run import OneLineFormatter

__all__ = ["OneLineFormatter", "format_status", "main"]
