"""The sequencer's vocabulary: its steps, modes, and what it reads and returns each scan."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from booth_ctl.control._events import Event


class Step(enum.Enum):
    LOAD_MOVE = "load_move"
    GRIP = "grip"
    FLUX_MOVE = "flux_move"
    FLUX_WAIT = "flux_wait"
    FLUX_APPROACH = "flux_approach"
    FLUX_ENTER = "flux_enter"
    FLUX_DWELL = "flux_dwell"
    FLUX_UP = "flux_up"
    DIP_MOVE = "dip_move"
    DIP_WAIT = "dip_wait"
    DIP_APPROACH = "dip_approach"
    DIP_ENTER = "dip_enter"
    DIP_DWELL = "dip_dwell"
    DIP_UP = "dip_up"
    DRAIN = "drain"
    REJECT_UP = "reject_up"
    UNLOAD_MOVE = "unload_move"
    COOL = "cool"
    RELEASE = "release"
    DONE = "done"


class Mode(enum.Enum):
    #: execute: advance through the steps.
    RUN = "run"
    #: holding: finish an immersion under way, advance nothing else.
    FINISH = "finish"
    #: suspending, suspended, stopping, aborting, held: everything up, nothing advances.
    WITHDRAW = "withdraw"


_APPROACH = frozenset({Step.FLUX_APPROACH, Step.DIP_APPROACH})
_DOWN = frozenset(
    {Step.FLUX_ENTER, Step.FLUX_DWELL, Step.FLUX_UP, Step.DIP_ENTER, Step.DIP_DWELL, Step.DIP_UP}
)
_ENTER = frozenset({Step.FLUX_ENTER, Step.DIP_ENTER})
#: A part in its dwell is in the bath, whatever the position readings said on the way down.
_DWELL = frozenset({Step.FLUX_DWELL, Step.DIP_DWELL})
_FLUX_STEPS = frozenset({Step.FLUX_APPROACH, Step.FLUX_ENTER, Step.FLUX_DWELL, Step.FLUX_UP})
_MOVES = frozenset({Step.LOAD_MOVE, Step.FLUX_MOVE, Step.DIP_MOVE, Step.UNLOAD_MOVE})
#: The holder has the unit's part, from the grip to its release at the load station.
_HELD = frozenset(
    {
        Step.FLUX_MOVE,
        Step.FLUX_WAIT,
        *_FLUX_STEPS,
        Step.DIP_MOVE,
        Step.DIP_WAIT,
        Step.DIP_APPROACH,
        Step.DIP_ENTER,
        Step.DIP_DWELL,
        Step.DIP_UP,
        Step.DRAIN,
        Step.UNLOAD_MOVE,
        Step.COOL,
    }
)


@dataclass(slots=True)
class Plant:
    """What the sequencer needs from one scan."""

    now: float
    z_mm: float | None
    station: int | None
    moving: bool | None
    permissives: Mapping[str, bool]
    o2_ppm: float | None
    temps_c: Mapping[str, float | None]
    #: How old the position reading is (s): the holder may be this times its speed further on.
    z_age_s: float = 0.0


@dataclass(slots=True)
class Result:
    #: Unmet permissives that stop the sequence (the controller suspends), or None.
    suspend: list[str] | None = None
    done: bool = False
    events: list[Event] = field(default_factory=list)
