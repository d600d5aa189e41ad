"""TEMPORARY adapter: the command authority's interface (``Authority``, ``Source``, ``Role``) over
today's ``Dispatcher``, until ``booth_ctl.commands`` exports the real one. Delete at merge and
import ``from booth_ctl.commands import Authority, Source, Role``.

It enforces the agreed rules for role-bearing local links: the role table (refused: ``forbidden``),
the mode (in remote mode a local link may only read, stop, abort, hold, ack_alarm and set_mode;
in local mode it may do what its role allows), ``not_ready`` before the first status, and
``set_mode`` as an audited command. Everything else (validation, dedupe by request_id, audit,
running on the controller) is the dispatcher's own code.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError

from booth_ctl.commands._dispatcher import (
    BAD_REQUEST,
    COMMANDS,
    INVALID_STATE,
    UNKNOWN_COMMAND,
    Dispatcher,
    _describe,
    cut_short_reply,
    make_reply,
    request_id_of,
)
from booth_ctl.control._events import CommandRefused

Role = Literal["viewer", "operator", "engineer"]
FORBIDDEN = "forbidden"
NOT_READY = "not_ready"

READ_ONLY_PREFIXES = ("get_", "list_")
OPERATOR_COMMANDS = frozenset({"ack_alarm", "hold", "unhold", "stop", "abort", "set_mode"})
ENGINEER_COMMANDS = OPERATOR_COMMANDS | {"reset", "clear", "start_job", "put_recipe", "refresh"}
#: What a local link may still do while the host links own the booth (remote mode).
LOCAL_IN_REMOTE = frozenset({"stop", "abort", "hold", "ack_alarm", "set_mode"})
ALL_COMMANDS = frozenset(COMMANDS) | {"set_mode"}
MODES = ("remote", "local")


@dataclass(frozen=True)
class Source:
    link: str
    user: str | None = None
    role: Role | None = None

    @property
    def who(self) -> str:
        if self.user is None:
            return self.link
        return f"{self.link}:{self.user}({self.role})"


def _read_only(command: str) -> bool:
    return command.startswith(READ_ONLY_PREFIXES)


def role_allows(role: Role | None, command: str) -> bool:
    if role is None or _read_only(command):
        return True
    if role == "engineer":
        return command in ENGINEER_COMMANDS
    if role == "operator":
        return command in OPERATOR_COMMANDS
    return False


def commands_of_role(role: Role | None) -> frozenset[str]:
    """Every command the role may give in some mode (the buttons the page draws)."""
    return frozenset(c for c in ALL_COMMANDS if role_allows(role, c))


class Authority:
    """``submit`` / ``allowed`` for the HMI (local link, role-bearing)."""

    def __init__(self, dispatcher: Dispatcher, is_ready: Callable[[], bool]) -> None:
        self._d = dispatcher
        self._records = dispatcher.records
        self._is_ready = is_ready
        #: The mode last read from the store (the feed refreshes it every second).
        self.mode: str = "remote"

    def allowed(self, source: Source) -> frozenset[str]:
        by_role = {c for c in ALL_COMMANDS if role_allows(source.role, c)}
        if self.mode == "remote":
            by_role = {c for c in by_role if _read_only(c) or c in LOCAL_IN_REMOTE}
        return frozenset(by_role)

    async def submit(
        self, command: str, body: Mapping[str, Any], source: Source
    ) -> dict[str, Any] | None:
        rid = request_id_of(body)
        if rid is None:
            return None
        store = self._records.store
        if len(rid) <= 64:
            first = await self._records.call(store.get_reply, rid)
            if first is not None:
                return first
        args = {k: v for k, v in body.items() if k != "request_id"}
        if command not in ALL_COMMANDS:
            return await self._refuse(
                rid, command, args, source,
                CommandRefused(UNKNOWN_COMMAND, f"unknown command {command!r}"),
            )
        if not role_allows(source.role, command):
            return await self._refuse(
                rid, command, args, source,
                CommandRefused(
                    FORBIDDEN,
                    f"{command} is not allowed for the role {source.role!r} of user "
                    f"{source.user!r}",
                    {"role": source.role},
                ),
            )
        if not self._is_ready():
            return await self._refuse(
                rid, command, args, source,
                CommandRefused(NOT_READY, "the booth has not reported its first status yet"),
            )
        if _read_only(command):
            payload = json.dumps({**args, "request_id": rid}).encode("utf-8")
            return await self._d.handle(command, payload, source.who)
        if command == "set_mode":
            return await self._set_mode(rid, args, source)
        self.mode = await self._records.call(store.get_mode)
        if self.mode == "remote" and command not in LOCAL_IN_REMOTE:
            return await self._refuse(
                rid, command, args, source,
                CommandRefused(
                    INVALID_STATE,
                    f"the booth is in remote mode (the MES owns it): {command} from the HMI "
                    "needs local mode",
                    {"mode": "remote"},
                ),
            )
        return await self._run(rid, command, {**args, "request_id": rid}, source)

    async def _run(
        self, rid: str, command: str, body: dict[str, Any], source: Source
    ) -> dict[str, Any]:
        # The dispatcher's own sequence (on record as running, run, reply on record), without
        # its host-link mode rule, which the checks above replace for a local link.
        try:
            cmd = COMMANDS[command].model_validate(body)
        except ValidationError as exc:
            args = {k: v for k, v in body.items() if k != "request_id"}
            return await self._refuse(
                rid, command, args, source, CommandRefused(BAD_REQUEST, _describe(command, exc))
            )
        args = cmd.model_dump(exclude={"request_id"})
        store = self._records.store
        entry = await self._records.call(
            store.command_started, rid, command, args, who=source.who,
            cut_short_reply=cut_short_reply(rid, command),
        )
        try:
            reply = await self._d._reply(rid, command, cmd)
        except Exception as exc:
            reply = make_reply(
                rid, command,
                error=CommandRefused(INVALID_STATE, f"{command} failed while it ran ({exc})"),
            )
        await self._records.call(store.command_done, entry, reply)
        return reply

    async def _set_mode(
        self, rid: str, args: dict[str, Any], source: Source
    ) -> dict[str, Any]:
        mode = args.get("mode")
        if set(args) != {"mode"} or mode not in MODES:
            return await self._refuse(
                rid, "set_mode", args, source,
                CommandRefused(BAD_REQUEST, "set_mode: mode must be 'local' or 'remote'"),
            )
        store = self._records.store
        await self._records.call(store.set_mode, mode, source.who)
        self.mode = mode
        reply = make_reply(rid, "set_mode", result={"mode": mode, "ts": round(time.time(), 3)})
        await self._records.call(
            store.record_command, rid, "set_mode", args, who=source.who, reply=reply
        )
        return reply

    async def _refuse(
        self, rid: str, command: str, args: dict[str, Any], source: Source,
        refusal: CommandRefused,
    ) -> dict[str, Any]:
        reply = make_reply(rid[:64], command, error=refusal)
        if len(rid) <= 64:
            await self._records.call(
                self._records.store.record_command, rid, command, args, who=source.who,
                reply=reply,
            )
        return reply
