"""PackML states and which command each state accepts (CONTRACT section 3)."""

from __future__ import annotations

from types import MappingProxyType

STATES = (
    "stopped",
    "resetting",
    "idle",
    "starting",
    "execute",
    "completing",
    "complete",
    "holding",
    "held",
    "unholding",
    "suspending",
    "suspended",
    "unsuspending",
    "stopping",
    "aborting",
    "aborted",
    "clearing",
)

#: The booth at a stop or on its way to one: a stop has nothing left to do, the heaters are off.
AT_OR_TO_STOP = frozenset({"stopped", "stopping", "aborting", "aborted", "clearing"})

#: Command -> the states that accept it; any other state refuses it with ``invalid_state``.
ACCEPTS: MappingProxyType[str, frozenset[str]] = MappingProxyType(
    {
        "reset": frozenset({"stopped", "complete"}),
        "start": frozenset({"idle"}),
        "hold": frozenset({"execute", "suspended"}),
        "unhold": frozenset({"held"}),
        "stop": frozenset(STATES) - AT_OR_TO_STOP,
        "abort": frozenset(STATES) - {"aborting", "aborted"},
        "clear": frozenset({"aborted"}),
    }
)

#: Where an accepted command leads.
TARGET = MappingProxyType(
    {
        "reset": "resetting",
        "start": "starting",
        "hold": "holding",
        "unhold": "unholding",
        "stop": "stopping",
        "abort": "aborting",
        "clear": "clearing",
    }
)

#: The heaters run (two paths closed) only in these states and only with no trip latched.
HEATING = frozenset(STATES) - AT_OR_TO_STOP

#: A job exists in these states: heating ones, but for the three with no job (before or after one).
JOB = HEATING - {"resetting", "idle", "complete"}

#: States in which the supervisor commands no motion and no job runs. With the holder also up,
#: the booth is at rest: nothing can enter or sit in a bath, so the inputs only gate the next
#: command and feed trips whose goals are a second or more, and the devices are polled at their
#: rest rate. Every other state (resetting included: it heats and purges) polls at full rate.
AT_REST = frozenset({"stopped", "idle", "complete", "aborted"})
