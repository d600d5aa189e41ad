"""The base of every model read from a file (booth config, register map, recipe, the simulator's
settings): unknown keys refused, so a misspelt key is an error naming it, never ignored; values
frozen; NaN and infinity refused. And the bounds several of them share."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

#: A TCP port to listen on or connect to.
TcpPort = Annotated[int, Field(ge=1, le=65535)]
#: A serial line's speed, from the slowest to the fastest any device here offers.
Baudrate = Annotated[int, Field(ge=1200, le=921600)]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
