"""Vendor devices as their manuals describe them, written without reading the register maps.

Each personality answers raw Modbus requests (function code, address, values) the way the
device's manual says the device does; the booth's maps in ``config/maps`` are written from the
same manuals, independently. A test that drives a personality through its map therefore fails
when the map is wrong (an address, a word order, a command code, a scale).
"""

from ._base import Personality, Refusal, personality_responder
from .autonics_tk4 import AutonicsTK4
from .endress_oxy5500 import EndressOXY5500
from .omron_e5cc import OmronE5CC
from .wago_750_352 import Wago750352
from .watlow_pm import WatlowPM

__all__ = [
    "AutonicsTK4",
    "EndressOXY5500",
    "OmronE5CC",
    "Personality",
    "Refusal",
    "Wago750352",
    "WatlowPM",
    "personality_responder",
]
