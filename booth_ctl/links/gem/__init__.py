"""The SECS/GEM equipment interface (SEMI E5/E30/E37 HSMS-SS), beside the MQTT link."""

from booth_ctl.links.gem._authority_shim import Authority, Source, authority_for
from booth_ctl.links.gem._link import GemLink

__all__ = ["Authority", "GemLink", "Source", "authority_for"]
