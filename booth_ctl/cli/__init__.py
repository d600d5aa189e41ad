"""``boothctl``: the daemon's entry point, the MQTT tools, the watch view and offline commands."""

from booth_ctl.cli._main import main

__all__ = ["main"]
