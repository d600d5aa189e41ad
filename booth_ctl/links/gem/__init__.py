"""The SECS/GEM equipment interface (SEMI E5/E30/E37 HSMS-SS), beside the MQTT link.

Commands go through the one command authority (``booth_ctl.commands``); events and alarms come
from the records' events outbox, with this link's own delivery cursor.
"""

from booth_ctl.links.gem._link import GemLink

__all__ = ["GemLink"]
