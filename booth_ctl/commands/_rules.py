"""Who may issue what, and when: the role and mode rules every link is judged by (pure).

A source is the link a command came in on, and the person and role where that link knows them.
The host links (``mqtt``, ``gem``) act as the MES and carry no role; the local links (``hmi``,
``cli``) carry the role of the person at the booth. The mode says who owns the booth: in
``remote`` the host links, in ``local`` the operator at the machine. Whatever the link, the same
command from the same kind of source in the same mode gets the same answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from booth_ctl.codes import FORBIDDEN, INVALID_STATE, CommandRefused
from booth_ctl.commands._models import COMMANDS

Role = Literal["viewer", "operator", "engineer"]
Mode = Literal["remote", "local"]
ROLES: tuple[Role, ...] = ("viewer", "operator", "engineer")

#: Commands that change nothing: answered whatever the mode and role.
READ_ONLY_PREFIXES = ("get_", "list_")
#: Commands that change something but neither move nor heat: the host links may issue them in
#: local mode too (an operator refreshing the solder stands at the booth).
LOCAL_OK = frozenset({"refresh"})
#: What a local link may still do while the host links own the booth: the safety direction,
#: acknowledging, and taking the booth over.
SAFETY_DIRECTION = frozenset({"stop", "abort", "hold", "ack_alarm", "set_mode"})
#: The links that act as the MES (no role; they own the booth in remote mode).
HOST_LINKS = frozenset({"mqtt", "gem"})

_OPERATOR = frozenset({"ack_alarm", "hold", "unhold", "stop", "abort", "set_mode"})
_ENGINEER = _OPERATOR | {"reset", "clear", "start_job", "put_recipe", "refresh"}


@dataclass(frozen=True)
class Source:
    """Where a command came from: the link, and the person and role where the link knows them."""

    link: str
    user: str | None = None
    #: None for the host links (mqtt, gem): they act as the MES.
    role: Role | None = None

    @property
    def is_host(self) -> bool:
        return self.link in HOST_LINKS

    @property
    def who(self) -> str:
        """The audit trail's name for the source (the MES is ``mes``, as before roles)."""
        if self.user:
            return self.user
        return "mes" if self.link == "mqtt" else self.link


def read_only(command: str) -> bool:
    return command.startswith(READ_ONLY_PREFIXES)


def role_allows(role: Role | None, command: str) -> bool:
    """A role's commands; a source without a role (a host link) is not limited by one."""
    if role is None or read_only(command):
        return True
    if role == "operator":
        return command in _OPERATOR
    if role == "engineer":
        return command in _ENGINEER
    return False


def mode_allows(source: Source, mode: Mode, command: str) -> bool:
    if read_only(command):
        return True
    if source.is_host:
        return mode == "remote" or command in LOCAL_OK
    return mode == "local" or command in SAFETY_DIRECTION


def role_refusal(command: str, source: Source) -> CommandRefused | None:
    """``forbidden`` when the source's role may never issue ``command`` (whatever the state)."""
    if not source.is_host and not role_allows(source.role or "viewer", command):
        role = source.role or "no role"
        return CommandRefused(
            FORBIDDEN,
            f"{command} is not allowed for role {role} on the {source.link} link",
            {"role": source.role},
        )
    return None


def judge(command: str, source: Source, mode: Mode) -> CommandRefused | None:
    """Why ``source`` may not issue ``command`` now, or None if it may (role, then mode)."""
    forbidden = role_refusal(command, source)
    if forbidden is not None:
        return forbidden
    if not mode_allows(source, mode, command):
        if mode == "local":
            why = "an operator works at it: {c} from the host is refused until it is remote"
        else:
            why = "the host runs it: {c} at the booth is refused until it is switched to local"
        return CommandRefused(
            INVALID_STATE, f"the booth is in {mode} mode ({why.format(c=command)})", {"mode": mode}
        )
    return None


def allowed(source: Source, mode: Mode) -> frozenset[str]:
    """The commands ``source`` may issue in ``mode`` (for drawing buttons)."""
    return frozenset(c for c in COMMANDS if judge(c, source, mode) is None)
