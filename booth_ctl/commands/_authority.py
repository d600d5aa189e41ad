"""The one command authority: every command, from any link or the CLI, enters here.

A link turns its wire format into ``(command, body, source)`` and the reply back; everything
else happens once, here, in this order: read the request id, answer a repeat with its first
reply, validate, refuse before the runtime is ready (``not_ready``), judge the role and the mode
(:mod:`._rules`), put a command that changes something on record as running, run it, and put
its reply on record (the audit trail, with the source's link, user and role). Refusals are put
on record the same way. Three replies are not on record, because nothing was judged and the
sender may simply retry the same request_id: ``bad_request`` for a request_id that cannot be
stored (too long, or not text), ``not_ready`` and a link's ``busy``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from booth_ctl.codes import BAD_REQUEST, INVALID_STATE, NOT_READY, UNKNOWN_COMMAND, CommandRefused
from booth_ctl.commands._execute import CommandTarget, Executor
from booth_ctl.commands._models import COMMANDS, Command
from booth_ctl.commands._recipes import RecipeBook, RecipeCheck
from booth_ctl.commands._replies import (
    audit_args,
    bad_request,
    cut_short_reply,
    encodable,
    make_reply,
    parse_payload,
    refusal,
    request_id_of,
    unstorable_request_id,
)
from booth_ctl.commands._rules import Mode, Source, allowed, judge, read_only, role_refusal
from booth_ctl.records import Records

log = logging.getLogger("booth_ctl.commands")

NOT_READY_MESSAGE = (
    "the booth is starting: it takes commands once its first complete process image and "
    "status are out; try again shortly"
)


class Authority:
    """Turns one command into exactly one reply (or nothing, when there is no request_id).

    ``ready`` is set by the runtime once its first complete process image and status are out;
    until then every command is refused ``not_ready``.
    """

    def __init__(
        self,
        target: CommandTarget,
        records: Records,
        recipes: RecipeBook,
        check_recipe: RecipeCheck,
        *,
        ready: asyncio.Event,
        refusals: tuple[type[Exception], ...] = (),
    ) -> None:
        self.target = target
        self.records = records
        self.ready = ready
        self._exec = Executor(target, records, recipes, check_recipe, refusals)
        #: The mode as last read or set here, for :meth:`allowed` (which cannot wait).
        self.mode: Mode = "remote"

    # ------------------------------------------------------------------ entry points

    async def submit_raw(
        self, command: str, payload: bytes, source: Source
    ) -> dict[str, Any] | None:
        """A command message as bytes (the MQTT path): not JSON -> dropped, logged."""
        try:
            body = parse_payload(payload)
        except ValueError as exc:
            log.warning("dropped %s from %s: %s (no request_id to reply to)", command,
                        source.link, exc)
            return None
        return await self.submit(command, body, source)

    async def submit(
        self, command: str, body: Mapping[str, Any] | Any, source: Source
    ) -> dict[str, Any] | None:
        if isinstance(body, Mapping) and not isinstance(body, dict):
            body = dict(body)
        rid = request_id_of(body)
        if rid is None:
            log.warning("dropped %s from %s: no request_id to reply to", command, source.link)
            return None
        why = unstorable_request_id(rid)
        if why is not None:
            return refusal(rid, command, BAD_REQUEST, why)
        store = self.records.store
        first = await self.records.call(store.get_reply, rid)
        if first is not None:
            return first
        given = {k: v for k, v in body.items() if k != "request_id"}
        if not encodable(body):
            # A lone surrogate (``"\ud800"``) is valid JSON but no text: refused (and kept on
            # record with its arguments escaped).
            return await self._refuse(rid, command, given, source, CommandRefused(
                BAD_REQUEST,
                "the payload holds a \\u escape that is not a character (a lone UTF-16 surrogate)",
            ))
        model = COMMANDS.get(command)
        if model is None:
            return await self._refuse(rid, command, given, source, CommandRefused(
                UNKNOWN_COMMAND,
                f"unknown command {command!r}; known: {', '.join(sorted(COMMANDS))}",
            ))
        try:
            cmd = model.model_validate(body)
        except ValidationError as exc:
            return await self._refuse(rid, command, given, source, bad_request(command, exc))
        args = cmd.model_dump(exclude={"request_id"})
        # A role that may never do this is told so whatever the state (CONTRACT s.7: 403).
        forbidden = role_refusal(command, source)
        if forbidden is not None:
            return await self._refuse(rid, command, args, source, forbidden)
        if not self.ready.is_set():
            return refusal(rid, command, NOT_READY, NOT_READY_MESSAGE)
        if read_only(command):
            # Every source may read, in either mode. Changes nothing: run again after a crash,
            # it does no harm, so no running entry.
            reply = await self._reply(rid, command, cmd, source)
            await self._record(rid, command, args, source, reply)
            return reply
        refused = judge(command, source, await self.refresh_mode())
        if refused is not None:
            return await self._refuse(rid, command, args, source, refused)
        return await self._run_on_record(rid, command, cmd, args, source)

    def allowed(self, source: Source) -> frozenset[str]:
        """The commands ``source`` may issue now (role x mode), for drawing buttons.

        By the mode as last read here (every changing command reads it); a link that draws
        buttons between commands calls :meth:`refresh_mode` first (``boothctl mode`` may have
        switched it from outside).
        """
        if not self.ready.is_set():
            return frozenset()
        return allowed(source, self.mode)

    async def refresh_mode(self) -> Mode:
        """Read the control mode from the records (another process may have switched it)."""
        self.mode = await self.records.call(self.records.store.get_mode)
        return self.mode

    async def status(self) -> dict[str, Any]:
        """The controller's status with the mode and a timestamp (``get_status``'s result)."""
        return await self._exec.status()

    # ------------------------------------------------------------------ the steps

    async def _run_on_record(
        self, rid: str, command: str, cmd: Command, args: dict[str, Any], source: Source
    ) -> dict[str, Any]:
        store = self.records.store
        # On record as running before it runs (if this fails, nothing ran: the link says busy).
        entry = await self.records.call(
            store.command_started, rid, command, args, who=source.who,
            cut_short_reply=cut_short_reply(rid, command),
            link=source.link, user=source.user, role=source.role,
        )
        try:
            reply = await self._reply(rid, command, cmd, source)
        except Exception as exc:
            # Not a refusal: it failed part way, perhaps after changing something.
            log.exception("%s (request_id %s) failed while it ran", command, rid)
            reply = refusal(
                rid, command, INVALID_STATE,
                f"{command} failed inside the booth while it ran ({exc}); whether it took "
                "effect is unknown: check get_status (or get_job)",
            )
        try:
            await self.records.call(store.command_done, entry, reply)
        except Exception:
            # The command ran: its reply still goes out; a repeat is told it was cut short.
            log.exception("could not put the reply of %s (request_id %s) on record", command, rid)
        if command == "set_mode" and reply["ok"]:
            self.mode = reply["result"]["mode"]
        return reply

    async def _reply(
        self, rid: str, command: str, cmd: Command, source: Source
    ) -> dict[str, Any]:
        try:
            return make_reply(rid, command, result=await self._exec.run(cmd, source.who))
        except Exception as exc:
            refused = self._exec.as_refusal(exc)
            if refused is None:
                raise
            return make_reply(rid, command, error=refused)

    async def _refuse(
        self, rid: str, command: str, args: dict[str, Any], source: Source,
        refused: CommandRefused,
    ) -> dict[str, Any]:
        reply = make_reply(rid, command, error=refused)
        await self._record(rid, command, audit_args(args), source, reply)
        return reply

    async def _record(
        self, rid: str, command: str, args: dict[str, Any], source: Source,
        reply: dict[str, Any],
    ) -> None:
        try:
            await self.records.call(
                self.records.store.record_command, rid, command, args, who=source.who,
                reply=reply, link=source.link, user=source.user, role=source.role,
            )
        except Exception:
            # Nothing ran that a repeat could run twice: the reply still goes out.
            log.exception("could not put %s (request_id %s) on record", command, rid)
