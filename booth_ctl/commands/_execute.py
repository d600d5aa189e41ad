"""Running a command that passed the authority's checks: on the controller or the records.

Nothing here drives an output: every state change is the controller's (state machine and
interlocks), every stored thing the records'. A refusal raises CommandRefused with its code.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

from booth_ctl.codes import (
    BAD_REQUEST,
    ERROR_CODES,
    INVALID_STATE,
    UNKNOWN_COMMAND,
    UNKNOWN_RECIPE,
    CommandRefused,
)
from booth_ctl.commands._models import (
    Abort,
    AckAlarm,
    Clear,
    Command,
    GetJob,
    GetRecipe,
    GetStatus,
    Hold,
    ListRecipes,
    PutRecipe,
    Refresh,
    Reset,
    SetMode,
    StartJob,
    Stop,
    Unhold,
)
from booth_ctl.commands._recipes import RecipeBook, RecipeCheck, UnknownRecipe, invalid
from booth_ctl.config._recipe import RecipeError
from booth_ctl.records import Records, recipe_hash
from drivers import TomlError, parse_toml

log = logging.getLogger("booth_ctl.commands")


class CommandTarget(Protocol):
    """What the authority calls on the controller. Refusals raise with a contract ``code``."""

    def reset(self) -> object: ...
    def hold(self) -> object: ...
    def unhold(self) -> object: ...
    def stop(self) -> object: ...
    def abort(self) -> object: ...
    def clear(self) -> object: ...
    def start_job(self, lot_id: str, recipe_name: str, recipe: Any, units: int) -> object: ...
    def ack_alarm(self, alarm_id: str | None) -> object: ...
    def refreshed(self, what: str) -> object: ...
    def status(self) -> dict[str, Any]: ...


@dataclass
class Executor:
    target: CommandTarget
    records: Records
    recipes: RecipeBook
    check_recipe: RecipeCheck
    #: Refusals of the controller besides CommandRefused (code, message, details attributes).
    refusals: tuple[type[Exception], ...] = ()

    async def run(self, cmd: Command, who: str) -> Any:
        """The command's result; raises CommandRefused (or one of ``refusals``) to refuse."""
        t = self.target
        match cmd:
            case Reset():
                return t.reset()
            case Hold():
                return t.hold()
            case Unhold():
                return t.unhold()
            case Stop():
                return t.stop()
            case Abort():
                return t.abort()
            case Clear():
                return t.clear()
            case AckAlarm(alarm_id=alarm_id):
                return t.ack_alarm(None if alarm_id == "all" else alarm_id)
            case Refresh(what=what):
                return t.refreshed(what)
            case GetStatus():
                return await self.status()
            case StartJob():
                return await self._start_job(cmd)
            case PutRecipe():
                return await self._put_recipe(cmd)
            case GetRecipe(name=name):
                return await self._get_recipe(name)
            case ListRecipes():
                return {"recipes": await self.records.call(self.recipes.listing)}
            case GetJob(lot_id=lot_id):
                job = await self.records.call(self.records.store.get_job, lot_id)
                if job is None:
                    raise CommandRefused(BAD_REQUEST, f"no job on record for lot_id {lot_id!r}")
                return job
            case SetMode(mode=mode):
                store = self.records.store
                before = await self.records.call(store.get_mode)
                await self.records.call(store.write_mode, mode, who)
                return {"mode": mode, "was": before}
        raise CommandRefused(UNKNOWN_COMMAND, f"command {type(cmd).__name__} has no handler")

    def as_refusal(self, exc: Exception) -> CommandRefused | None:
        """The refusal a controller exception stands for, or None if it is not one."""
        if isinstance(exc, CommandRefused):
            return exc
        if not isinstance(exc, self.refusals):
            return None
        code = getattr(exc, "code", None)
        message = getattr(exc, "message", None) or str(exc)
        details = getattr(exc, "details", None)
        if code not in ERROR_CODES:
            log.error("controller refusal with a code outside the contract: %r", code)
            code = INVALID_STATE
        return CommandRefused(
            str(code), str(message), dict(details) if isinstance(details, dict) else None
        )

    async def status(self) -> dict[str, Any]:
        mode = await self.records.call(self.records.store.get_mode)
        return {**self.target.status(), "mode": mode, "ts": round(time.time(), 3)}

    async def _load(self, name: str) -> tuple[dict[str, Any], str]:
        try:
            return await self.records.call(self.recipes.load, name)
        except UnknownRecipe as exc:
            raise CommandRefused(UNKNOWN_RECIPE, str(exc), {"name": name}) from exc
        except RecipeError as exc:
            raise invalid(name, exc) from exc

    async def _get_recipe(self, name: str) -> dict[str, Any]:
        body, source = await self._load(name)
        ver = await self.records.call(self.records.store.latest_recipe, name, source=source)
        return {
            "name": name,
            "source": source,
            "hash": recipe_hash(body),
            "version": ver.version if ver is not None else None,
            "recipe": body,
        }

    async def _start_job(self, cmd: StartJob) -> Any:
        body, source = await self._load(cmd.recipe)
        try:
            recipe = self.check_recipe(body)
        except RecipeError as exc:
            raise invalid(cmd.recipe, exc) from exc
        store = self.records.store
        version = await self.records.call(store.store_recipe, cmd.recipe, body, source)
        result = self.target.start_job(cmd.lot_id, cmd.recipe, recipe, cmd.units)
        await self.records.call(store.job_accepted, cmd.lot_id, cmd.recipe, version.hash, cmd.units)
        out: dict[str, Any] = dict(result) if isinstance(result, dict) else {}
        out.update(
            {
                "lot_id": cmd.lot_id,
                "recipe": cmd.recipe,
                "recipe_hash": version.hash,
                "recipe_version": version.version,
                "units": cmd.units,
            }
        )
        return out

    async def _put_recipe(self, cmd: PutRecipe) -> Any:
        if isinstance(cmd.recipe, str):
            try:
                body = parse_toml(cmd.recipe)
            except TomlError as exc:
                raise invalid(cmd.name, RecipeError([str(exc)])) from exc
        else:
            body = cmd.recipe
        try:
            self.check_recipe(body)
        except RecipeError as exc:
            raise invalid(cmd.name, exc) from exc
        version = await self.records.call(self.records.store.store_recipe, cmd.name, body, "mes")
        return {"name": cmd.name, "hash": version.hash, "version": version.version}
