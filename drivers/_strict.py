"""The base of every model read from a file (booth config, register map, recipe, the simulator's
settings): unknown keys refused, so a misspelt key is an error naming it, never ignored; values
frozen; NaN and infinity refused."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
