"""The MES commands: one model per command, and the dispatcher that gives each exactly one reply.

The dispatcher never drives outputs: every command goes to the controller (state machine and
interlocks) or to the records. A command is validated and checked against the control mode; one
that changes something is put on record as running, run, and its reply recorded (the audit
trail, and the answer to a repeated ``request_id``); only then is its reply handed back for
publishing. Refusals are put on record the same way.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError

from booth_ctl.config._booth import BoothConfig
from booth_ctl.config._recipe import Recipe, RecipeError, recipe_from_dict
from booth_ctl.control._events import CommandRefused
from booth_ctl.records._recorder import Records
from booth_ctl.records._store import RecordStore, recipe_hash
from drivers import TomlError, parse_toml

log = logging.getLogger("booth_ctl.commands")

#: A recipe name is a safe file stem: no separators, no dots, nothing path-like.
RECIPE_NAME_RE = r"^[A-Za-z0-9_-]{1,64}$"
MAX_UNITS = 100_000
#: Commands a booth in local mode still answers for the MES (they change nothing).
READ_ONLY_PREFIXES = ("get_", "list_")
#: Commands that change something but neither move nor heat: accepted in local mode too (an
#: operator refreshing the solder stands at the booth). Beyond the contract's command list.
LOCAL_OK = frozenset({"refresh"})

BAD_REQUEST = "bad_request"
UNKNOWN_COMMAND = "unknown_command"
INVALID_STATE = "invalid_state"
INTERLOCK = "interlock"
UNKNOWN_RECIPE = "unknown_recipe"
INVALID_RECIPE = "invalid_recipe"
BUSY = "busy"
ERROR_CODES = frozenset(
    {BAD_REQUEST, UNKNOWN_COMMAND, INVALID_STATE, INTERLOCK, UNKNOWN_RECIPE, INVALID_RECIPE, BUSY}
)

RequestId = Annotated[str, Field(min_length=1, max_length=64)]
RecipeName = Annotated[str, Field(pattern=RECIPE_NAME_RE)]
LotId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f]+$")]


class _Command(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    request_id: RequestId


class Reset(_Command):
    pass


class Hold(_Command):
    pass


class Unhold(_Command):
    pass


class Stop(_Command):
    pass


class Abort(_Command):
    pass


class Clear(_Command):
    pass


class StartJob(_Command):
    lot_id: LotId
    recipe: RecipeName
    units: Annotated[StrictInt, Field(ge=1, le=MAX_UNITS)]


class AckAlarm(_Command):
    #: An alarm's id, or "all".
    alarm_id: Annotated[str, Field(min_length=1, max_length=64)]


class GetStatus(_Command):
    pass


class PutRecipe(_Command):
    name: RecipeName
    #: The recipe as a JSON object, or the text of a recipe TOML file.
    recipe: dict[str, Any] | str


class GetRecipe(_Command):
    name: RecipeName


class ListRecipes(_Command):
    pass


class GetJob(_Command):
    lot_id: LotId


class Refresh(_Command):
    """The solder of a vessel, or the flux, was refreshed: its dip counter restarts."""

    #: A vessel's name, or "flux".
    what: Annotated[str, Field(min_length=1, max_length=64)]


COMMANDS: dict[str, type[_Command]] = {
    "reset": Reset,
    "start_job": StartJob,
    "hold": Hold,
    "unhold": Unhold,
    "stop": Stop,
    "abort": Abort,
    "clear": Clear,
    "ack_alarm": AckAlarm,
    "get_status": GetStatus,
    "put_recipe": PutRecipe,
    "get_recipe": GetRecipe,
    "list_recipes": ListRecipes,
    "get_job": GetJob,
    "refresh": Refresh,
}


class CommandTarget(Protocol):
    """What the dispatcher calls on the controller. Refusals raise with a contract ``code``."""

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


#: Validates a recipe's data (raising RecipeError with every problem) and returns what the
#: controller's ``start_job`` takes.
RecipeCheck = Callable[[dict[str, Any]], Any]


def recipe_check(cfg: BoothConfig) -> RecipeCheck:
    """The booth's own recipe validation (schema, then the rules against this booth's limits)."""

    def check(data: dict[str, Any]) -> Recipe:
        return recipe_from_dict(data, cfg)

    return check


def make_reply(
    request_id: str,
    command: str,
    *,
    result: Any = None,
    error: CommandRefused | None = None,
) -> dict[str, Any]:
    err: dict[str, Any] | None = None
    if error is not None:
        err = {"code": error.code, "message": error.message}
        if error.details:
            err["details"] = error.details
    return {
        "request_id": request_id,
        "command": command,
        "ok": error is None,
        "error": err,
        "result": None if error is not None else result,
    }


class UnknownRecipe(Exception):
    pass


@dataclass
class RecipeBook:
    """Recipes by name: stored versions put over MQTT first, then the recipes folder's files.

    Blocking (file and database reads): run on the records thread.
    """

    recipes_dir: Path
    store: RecordStore

    def file_names(self) -> list[str]:
        if not self.recipes_dir.is_dir():
            return []
        return sorted(
            p.stem for p in self.recipes_dir.glob("*.toml") if re.match(RECIPE_NAME_RE, p.stem)
        )

    def load(self, name: str) -> tuple[dict[str, Any], str]:
        """The recipe's data and where it came from ("mes" or "file")."""
        stored = self.store.latest_recipe(name, source="mes")
        if stored is not None:
            return stored.body, "mes"
        path = self.recipes_dir / f"{name}.toml"
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            raise UnknownRecipe(f"no recipe named {name!r}") from exc
        except OSError as exc:
            raise UnknownRecipe(f"recipe {name!r} cannot be read: {exc.strerror}") from exc
        try:
            return parse_toml(text), "file"
        except TomlError as exc:
            raise RecipeError([f"{path.name}: {exc}"]) from exc

    def listing(self) -> list[dict[str, Any]]:
        stored = self.store.recipe_versions()
        names = sorted(set(self.file_names()) | set(stored))
        out = []
        for n in names:
            s = stored.get(n)
            out.append(
                {
                    "name": n,
                    "file": n in self.file_names(),
                    "versions": s["versions"] if s else 0,
                    "hash": s["hash"] if s else None,
                }
            )
        return out


def parse_payload(payload: bytes) -> Any:
    """The JSON of a command message; ValueError says why it is not JSON.

    ``json.loads`` raises RecursionError, not ValueError, on deep nesting (``[[[[...``).
    """
    try:
        return json.loads(payload)
    except RecursionError as exc:
        raise ValueError("payload is nested too deeply to be a command") from exc
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError alike
        raise ValueError(f"payload is not JSON: {exc}") from exc


def request_id_of(body: Any) -> str | None:
    """The request_id a reply can be addressed to, or None."""
    rid = body.get("request_id") if isinstance(body, dict) else None
    return rid if isinstance(rid, str) and rid else None


def _encodable(body: Any) -> bool:
    try:
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


#: The arguments of a refused request are kept on the audit trail up to this many characters.
AUDIT_ARGS_MAX = 4096


def _audit_args(args: dict[str, Any]) -> dict[str, Any]:
    """What a refused request's arguments go on record as: as given, unless they are too long
    to keep or hold no text (a lone surrogate); then their JSON, escaped and cut."""
    text = json.dumps(args, ensure_ascii=True, default=str)
    if len(text) <= AUDIT_ARGS_MAX and _encodable(args):
        return args
    return {"as_received": text[:AUDIT_ARGS_MAX], "length": len(text)}


def cut_short_reply(request_id: str, command: str) -> dict[str, Any]:
    """The answer to a repeat of a command the booth was running when it stopped (or whose reply
    could not be put on record): it may or may not have taken effect, and it is not run again."""
    return make_reply(
        request_id,
        command,
        error=CommandRefused(
            INVALID_STATE,
            f"an earlier attempt of request_id {request_id!r} ({command}) was cut short while it "
            "ran (the booth stopped); whether it took effect is unknown and it is not run again: "
            "check get_status (or get_job) and send a new request_id",
            {"cut_short": True},
        ),
    )


@dataclass
class Dispatcher:
    """Turns one command message into exactly one reply (or nothing, when no request_id).

    Every reply to a request_id that can be stored goes on record (the audit trail) and is the
    answer to a repeat of it, refusals included. A command that changes something is put on
    record as running before it runs, so a crash before its reply is written does not let a
    repeat run it again (the repeat is told it was cut short). Two replies are not on record:
    ``bad_request`` for a request_id that cannot be stored (too long, or not text) and the
    link's ``busy`` (nothing was judged, so the MES may simply retry).
    """

    target: CommandTarget
    records: Records
    recipes: RecipeBook
    check_recipe: RecipeCheck
    #: Refusals of the controller besides CommandRefused (code, message, details attributes).
    refusals: tuple[type[Exception], ...] = ()

    async def handle(self, command: str, payload: bytes, who: str = "mes") -> dict[str, Any] | None:
        try:
            body = parse_payload(payload)
        except ValueError as exc:
            log.warning("dropped %s: %s (no request_id to reply to)", command, exc)
            return None
        rid = request_id_of(body)
        if rid is None:
            log.warning("dropped %s: no request_id to reply to", command)
            return None
        # A request_id that cannot be stored cannot be matched against a repeat either: these
        # refusals are not on record (a repeat is judged, and refused, again).
        if len(rid) > 64:
            return make_reply(
                rid,
                command,
                error=CommandRefused(
                    BAD_REQUEST, f"request_id is {len(rid)} characters long; at most 64"
                ),
            )
        if not _encodable(rid):
            return make_reply(
                rid,
                command,
                error=CommandRefused(
                    BAD_REQUEST, "request_id holds a \\u escape that is not a character "
                    "(a lone UTF-16 surrogate)"
                ),
            )
        store = self.records.store
        first = await self.records.call(store.get_reply, rid)
        if first is not None:
            return first
        given = {k: v for k, v in body.items() if k != "request_id"}
        if not _encodable(body):
            # A lone surrogate (``"\ud800"``) is valid JSON but no text: such a request is
            # refused (and kept on record with its arguments escaped).
            return await self._refuse(
                rid, command, given, who,
                CommandRefused(
                    BAD_REQUEST, "the payload holds a \\u escape that is not a character "
                    "(a lone UTF-16 surrogate)"
                ),
            )
        model = COMMANDS.get(command)
        if model is None:
            return await self._refuse(
                rid, command, given, who,
                CommandRefused(
                    UNKNOWN_COMMAND,
                    f"unknown command {command!r}; known: {', '.join(sorted(COMMANDS))}",
                ),
            )
        try:
            cmd = model.model_validate(body)
        except ValidationError as exc:
            return await self._refuse(
                rid, command, given, who, CommandRefused(BAD_REQUEST, _describe(command, exc))
            )
        args = cmd.model_dump(exclude={"request_id"})
        if command.startswith(READ_ONLY_PREFIXES):
            # Changes nothing: run again after a crash, it does no harm, so no running entry.
            reply = await self._reply(rid, command, cmd)
            await self._record(rid, command, args, who, reply)
            return reply
        mode = await self.records.call(store.get_mode)
        if mode != "remote" and command not in LOCAL_OK:
            return await self._refuse(
                rid, command, args, who,
                CommandRefused(
                    INVALID_STATE,
                    f"the booth is in {mode} mode (an operator works at it): {command} "
                    "is refused until it is switched back to remote",
                    {"mode": mode},
                ),
            )
        # On record as running before it runs (if this fails, nothing ran: the link says busy).
        entry = await self.records.call(
            store.command_started, rid, command, args, who=who,
            cut_short_reply=cut_short_reply(rid, command),
        )
        try:
            reply = await self._reply(rid, command, cmd)
        except Exception as exc:
            # Not a refusal: it failed part way, perhaps after changing something.
            log.exception("%s (request_id %s) failed while it ran", command, rid)
            reply = make_reply(
                rid,
                command,
                error=CommandRefused(
                    INVALID_STATE,
                    f"{command} failed inside the booth while it ran ({exc}); whether it took "
                    "effect is unknown: check get_status (or get_job)",
                ),
            )
        try:
            await self.records.call(store.command_done, entry, reply)
        except Exception:
            # The command ran: its reply still goes out; a repeat is told it was cut short.
            log.exception("could not put the reply of %s (request_id %s) on record", command, rid)
        return reply

    async def _reply(self, rid: str, command: str, cmd: _Command) -> dict[str, Any]:
        try:
            return make_reply(rid, command, result=await self._run(cmd))
        except CommandRefused as exc:
            return make_reply(rid, command, error=exc)
        except self.refusals as exc:
            return make_reply(rid, command, error=_as_refusal(exc))

    async def _refuse(
        self, rid: str, command: str, args: dict[str, Any], who: str, refusal: CommandRefused
    ) -> dict[str, Any]:
        reply = make_reply(rid, command, error=refusal)
        await self._record(rid, command, _audit_args(args), who, reply)
        return reply

    async def _record(
        self, rid: str, command: str, args: dict[str, Any], who: str, reply: dict[str, Any]
    ) -> None:
        try:
            await self.records.call(
                self.records.store.record_command, rid, command, args, who=who, reply=reply
            )
        except Exception:
            # Nothing ran that a repeat could run twice: the reply still goes out.
            log.exception("could not put %s (request_id %s) on record", command, rid)

    async def _run(self, cmd: _Command) -> Any:
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
                body, source = await self._load(name)
                store = self.records.store
                ver = await self.records.call(store.latest_recipe, name, source=source)
                return {
                    "name": name,
                    "source": source,
                    "hash": recipe_hash(body),
                    "version": ver.version if ver is not None else None,
                    "recipe": body,
                }
            case ListRecipes():
                return {"recipes": await self.records.call(self.recipes.listing)}
            case GetJob(lot_id=lot_id):
                job = await self.records.call(self.records.store.get_job, lot_id)
                if job is None:
                    raise CommandRefused(BAD_REQUEST, f"no job on record for lot_id {lot_id!r}")
                return job
        raise CommandRefused(UNKNOWN_COMMAND, f"command {type(cmd).__name__} has no handler")

    async def status(self) -> dict[str, Any]:
        mode = await self.records.call(self.records.store.get_mode)
        return {**self.target.status(), "mode": mode, "ts": round(time.time(), 3)}

    async def _load(self, name: str) -> tuple[dict[str, Any], str]:
        try:
            return await self.records.call(self.recipes.load, name)
        except UnknownRecipe as exc:
            raise CommandRefused(UNKNOWN_RECIPE, str(exc), {"name": name}) from exc
        except RecipeError as exc:
            raise _invalid(name, exc) from exc

    async def _start_job(self, cmd: StartJob) -> Any:
        body, source = await self._load(cmd.recipe)
        try:
            recipe = self.check_recipe(body)
        except RecipeError as exc:
            raise _invalid(cmd.recipe, exc) from exc
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
                raise _invalid(cmd.name, RecipeError([str(exc)])) from exc
        else:
            body = cmd.recipe
        try:
            self.check_recipe(body)
        except RecipeError as exc:
            raise _invalid(cmd.name, exc) from exc
        version = await self.records.call(self.records.store.store_recipe, cmd.name, body, "mes")
        return {"name": cmd.name, "hash": version.hash, "version": version.version}


def _invalid(name: str, exc: RecipeError) -> CommandRefused:
    n = len(exc.problems)
    return CommandRefused(
        INVALID_RECIPE,
        f"recipe {name!r} has {n} problem{'s' if n != 1 else ''}: " + "; ".join(exc.problems),
        {"problems": exc.problems},
    )


def _as_refusal(exc: Exception) -> CommandRefused:
    code = getattr(exc, "code", None)
    message = getattr(exc, "message", None) or str(exc)
    details = getattr(exc, "details", None)
    if code not in ERROR_CODES:
        log.error("controller refusal with a code outside the contract: %r", code)
        code = INVALID_STATE
    return CommandRefused(
        str(code), str(message), dict(details) if isinstance(details, dict) else None
    )


def _describe(command: str, exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(body)"
        if err["type"] == "extra_forbidden":
            parts.append(f"{loc}: unexpected field")
        else:
            parts.append(f"{loc}: {err['msg']}")
    return f"{command}: " + "; ".join(parts)
