"""Every command in every PackML state: accepted (and where it leads) or refused invalid_state."""

from __future__ import annotations

import copy
import functools
import re
from typing import Any

import pytest

from booth_ctl.control._controller import Controller
from booth_ctl.control._events import CommandRefused
from booth_ctl.control._packml import ACCEPTS, HEATING, JOB, STATES, TARGET
from tests._util import ROOT
from tests.booth_ctl._plant import Loop, demo_recipe, idle_loop

COMMANDS = ("reset", "start", "hold", "unhold", "stop", "abort", "clear")


@functools.cache
def _idle_once() -> Loop:
    return idle_loop()


def _idle() -> Loop:
    base = _idle_once()
    loop = copy.deepcopy(base)
    loop.events.clear()
    return loop


def _in_state(state: str) -> Loop:
    """A healthy booth whose controller is put in ``state`` (with a job where the state has one)."""
    loop = _idle()
    if state in JOB:
        loop.ctl.start_job("L", "demo", demo_recipe(loop.plant.loaded), 1)
        loop.ctl._pending.clear()  # the path here is not under test
    loop.ctl.state = state
    return loop


def _call(ctl: Controller, command: str, loop: Loop) -> Any:
    if command == "start":
        return ctl.start_job("L2", "demo", demo_recipe(loop.plant.loaded), 1)
    return getattr(ctl, command)()


def test_the_state_list_is_the_contract_list() -> None:
    # Taken from the user's documentation of the status message (the contract's list), not from
    # the product: the two must agree, in the same order.
    doc = (ROOT / "docs" / "mqtt.md").read_text(encoding="utf-8")
    listed = re.search(r"PackML state, lower snake case: `([a-z ]+)`", doc)
    assert listed is not None, "docs/mqtt.md no longer lists the PackML states"
    assert tuple(listed.group(1).split()) == STATES


def test_the_heaters_run_everywhere_but_at_a_stop_or_on_the_way_to_one() -> None:
    assert {s for s in STATES if s not in HEATING} == {
        "stopped", "stopping", "aborting", "aborted", "clearing"
    }
    job = {"starting", "execute", "completing", "holding", "held", "unholding",
           "suspending", "suspended", "unsuspending"}
    assert job == JOB


@pytest.mark.parametrize("state", STATES)
def test_every_command_in_state(state: str) -> None:
    for command in COMMANDS:
        _check_command(state, command)


def _check_command(state: str, command: str) -> None:
    loop = _in_state(state)
    accepted = state in ACCEPTS[command]
    if accepted:
        result = _call(loop.ctl, command, loop)
        assert loop.ctl.state == TARGET[command], (state, command)
        assert result["state"] == TARGET[command]
    else:
        with pytest.raises(CommandRefused) as info:
            _call(loop.ctl, command, loop)
        assert info.value.code == "invalid_state", (state, command)
        assert loop.ctl.state == state
    loop.run_for(0.05)  # whatever it did, the next scans do not raise and keep the rules
    changed = [e.data for e in loop.events if e.type == "state_changed"]
    if accepted:
        assert changed[0] == {"from": state, "to": TARGET[command], "reason": changed[0]["reason"]}
    out = loop.last.outputs
    if loop.ctl.state in ("stopped", "stopping", "aborting", "aborted", "clearing"):
        assert out["heater1.run"] == 0 and out["io.heater_contactor"] is False


def test_acceptance_table_matches_packml() -> None:
    assert ACCEPTS["reset"] == {"stopped", "complete"}
    assert ACCEPTS["clear"] == {"aborted"}
    assert ACCEPTS["abort"] == set(STATES) - {"aborting", "aborted"}
    assert "stopped" not in ACCEPTS["stop"] and "clearing" not in ACCEPTS["stop"]


def test_ack_alarm_is_accepted_in_every_state() -> None:
    for state in STATES:
        loop = _in_state(state)
        assert loop.ctl.ack_alarm(None) == {"acked": []}
