"""The buttons a role may ever see, from the command authority's own rules (no table of our own)."""

from __future__ import annotations

from typing import get_args

from booth_ctl.commands import Mode, Role, Source, allowed


def commands_of_role(role: Role | None) -> frozenset[str]:
    """Every command the role may give in some mode on the HMI (the buttons the page draws)."""
    out: frozenset[str] = frozenset()
    for mode in get_args(Mode):
        out |= allowed(Source("hmi", None, role), mode)
    return out
