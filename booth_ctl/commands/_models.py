"""The commands: one pydantic model per command (CONTRACT section 3, plus ``refresh`` and
``set_mode``), validated strictly: unknown fields refused, a ``request_id`` of 1-64 characters."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt

#: A recipe name is a safe file stem: no separators, no dots, nothing path-like.
RECIPE_NAME_RE = r"^[A-Za-z0-9_-]{1,64}$"
MAX_UNITS = 100_000

RequestId = Annotated[str, Field(min_length=1, max_length=64)]
RecipeName = Annotated[str, Field(pattern=RECIPE_NAME_RE)]
LotId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f]+$")]


class Command(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    request_id: RequestId


class Reset(Command):
    pass


class Hold(Command):
    pass


class Unhold(Command):
    pass


class Stop(Command):
    pass


class Abort(Command):
    pass


class Clear(Command):
    pass


class StartJob(Command):
    lot_id: LotId
    recipe: RecipeName
    units: Annotated[StrictInt, Field(ge=1, le=MAX_UNITS)]


class AckAlarm(Command):
    #: An alarm's id, or "all".
    alarm_id: Annotated[str, Field(min_length=1, max_length=64)]


class GetStatus(Command):
    pass


class PutRecipe(Command):
    name: RecipeName
    #: The recipe as a JSON object, or the text of a recipe TOML file.
    recipe: dict[str, Any] | str


class GetRecipe(Command):
    name: RecipeName


class ListRecipes(Command):
    pass


class GetJob(Command):
    lot_id: LotId


class Refresh(Command):
    """The solder of a vessel, or the flux, was refreshed: its dip counter restarts."""

    #: A vessel's name, or "flux".
    what: Annotated[str, Field(min_length=1, max_length=64)]


class SetMode(Command):
    """Who owns the booth: ``remote`` (the host links) or ``local`` (an operator at it)."""

    mode: Literal["remote", "local"]


COMMANDS: dict[str, type[Command]] = {
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
    "set_mode": SetMode,
}
