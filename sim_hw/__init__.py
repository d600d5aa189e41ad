"""The simulated booth: physics, register banks, Modbus/serial servers and fault injection.

``SimBooth`` runs everything in the current event loop; ``BoothPhysics`` is the pure, steppable
physics alone (no I/O, no clock) for tests on a virtual clock.
"""

from ._analyzer import ChecksumError, checksum, frame, o2_line, parse
from ._banks import AddressError, RegisterBank
from ._booth import SimBooth
from ._control import BadReply, SimNotRunning, request
from ._faults import FAULT_NAMES, FaultError
from ._part import BathEntry, Drop
from ._physics import BoothPhysics
from ._settings import LoadedSim, SimSettings, load_sim_config, sim_config_from_dict

__all__ = [
    "FAULT_NAMES",
    "AddressError",
    "BadReply",
    "BathEntry",
    "BoothPhysics",
    "ChecksumError",
    "Drop",
    "FaultError",
    "LoadedSim",
    "RegisterBank",
    "SimBooth",
    "SimNotRunning",
    "SimSettings",
    "checksum",
    "frame",
    "load_sim_config",
    "o2_line",
    "parse",
    "request",
    "sim_config_from_dict",
]
