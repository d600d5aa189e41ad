"""Recipes: one TOML file each, validated against the alloy and flux tables and the booth.

The shape (types, static bounds) is a pydantic model with ``extra="forbid"``; the rules that tie a
recipe to the booth and to physics are checked on whatever parts parse, so one pass reports every
problem, each naming its field and the bound it breaks. No recipe can lift a safety rule: the O2
cap, the over-temperature limit and the minimum stable time come from the booth, not the recipe.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, Field, ValidationError

from booth_ctl.config._alloys import (
    ALLOYS,
    AUTOIGNITION_MARGIN_C,
    FLUX_AUTOIGNITION_BASIS,
    FluxAgent,
    SolventClass,
    components_problems,
    flux_autoignition_c,
    flux_kind,
    ignition_ceiling_c,
)
from booth_ctl.config._booth import O2_ABSOLUTE_MAX_PPM, BoothConfig
from drivers import TomlError, read_toml
from drivers._strict import StrictModel as _Strict

#: The bath must be this far above the alloy's liquidus, so the dip sees fully molten solder.
SUPERHEAT_MIN_C = 20.0
#: Claim 26: a later layer melts at least this much lower than the layer under it.
LAYER_STEP_C = 20.0
#: Claim 31: an alcohol flux carries at most this much solids.
ALCOHOL_SOLIDS_MAX_WT_PCT = 10.0
DWELL_MAX_S = 600.0
#: Every dip is at least this many times the holder's z_tolerance_mm deep: a depth within the
#: tolerance of the surface could count as reached before the part touches the bath at all, so
#: the depth must exceed the tolerance by a margin (here the tolerance again).
DEPTH_MIN_TOLERANCES = 2.0
DIPS_MAX = 8

_M = TypeVar("_M", bound=BaseModel)


class FluxStep(_Strict):
    agent: FluxAgent
    #: A ``mixture`` names its solvent classes; it is judged by the lowest autoignition point.
    components: Annotated[list[SolventClass], Field(min_length=2, max_length=4)] | None = None
    solids_wt_pct: Annotated[float, Field(ge=0, le=100)]
    depth_mm: Annotated[float, Field(gt=0)]
    dwell_s: Annotated[float, Field(gt=0, le=DWELL_MAX_S)]
    speed_mm_s: Annotated[float, Field(gt=0)]


class DipStep(_Strict):
    vessel: str
    alloy: str
    #: 450 C covers the hottest alloy of the table (Au88Ge12: liquidus 356 + superheat); the
    #: booth's trip and its flux's autoignition point cap it further (``_dip_problems``).
    setpoint_c: Annotated[float, Field(gt=0, le=450)]
    #: The dip waits until the solder is within setpoint +/- band.
    band_c: Annotated[float, Field(gt=0, le=50)]
    depth_mm: Annotated[float, Field(gt=0)]
    dwell_s: Annotated[float, Field(gt=0, le=DWELL_MAX_S)]
    entry_speed_mm_s: Annotated[float, Field(gt=0)]
    withdraw_speed_mm_s: Annotated[float, Field(gt=0)]


class Recipe(_Strict):
    description: str = ""
    holder: Literal["suction", "chain", "both"]
    o2_limit_ppm: Annotated[float, Field(gt=0, le=O2_ABSOLUTE_MAX_PPM)]
    #: At least the booth's limits.o2_stable_s (itself at least one analyzer report).
    o2_stable_s: Annotated[float, Field(gt=0, le=3600)]
    drain_s: Annotated[float, Field(ge=0, le=3600)] = 0.0
    cool_s: Annotated[float, Field(ge=0, le=3600)] = 0.0
    flux: FluxStep
    dips: Annotated[list[DipStep], Field(min_length=1, max_length=DIPS_MAX)]

    def vessels(self) -> list[str]:
        return [d.vessel for d in self.dips]


class RecipeError(Exception):
    """Every problem of a recipe, each as ``field: what is wrong (bound)``."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


def load_recipe(path: str | Path, cfg: BoothConfig) -> Recipe:
    p = Path(path)
    try:
        data = read_toml(p)
    except OSError as exc:
        raise RecipeError([f"(file): cannot read recipe: {exc.strerror}"]) from exc
    except TomlError as exc:
        raise RecipeError([f"(file): {exc}"]) from exc
    return recipe_from_dict(data, cfg)


def recipe_from_dict(data: Any, cfg: BoothConfig) -> Recipe:
    if not isinstance(data, Mapping):
        raise RecipeError(["(top): a recipe is a table of fields"])
    problems: list[str] = []
    recipe: Recipe | None = None
    try:
        recipe = Recipe.model_validate(dict(data))
    except ValidationError as exc:
        problems.extend(_format_errors(exc))
    problems.extend(_rule_problems(data, cfg))
    if problems or recipe is None:
        raise RecipeError(problems or ["(top): invalid recipe"])
    return recipe


def _format_errors(exc: ValidationError, prefix: str = "") -> list[str]:
    out = []
    for err in exc.errors():
        loc = prefix
        for part in err["loc"]:
            loc += f"[{part}]" if isinstance(part, int) else (f".{part}" if loc else str(part))
        out.append(f"{loc or '(top)'}: {err['msg']}")
    return out


def _parse_part(model: type[_M], raw: Any) -> _M | None:
    try:
        return model.model_validate(raw)
    except ValidationError:
        return None  # already reported by the whole-recipe validation


def _number(raw: Any) -> float | None:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        return None
    return float(raw)


def _rule_problems(data: Mapping[str, Any], cfg: BoothConfig) -> list[str]:
    """The rules that need the booth, the tables or several fields, on the parts that parse."""
    problems: list[str] = []
    holder = data.get("holder")
    if holder in ("suction", "chain", "both") and holder != cfg.holder.kind:
        problems.append(
            f"holder: {holder!r} does not match this booth's holder.kind {cfg.holder.kind!r}"
        )
    stable_s = _number(data.get("o2_stable_s"))
    if stable_s is not None and stable_s < cfg.limits.o2_stable_s:
        problems.append(
            f"o2_stable_s: {stable_s:g} is below the booth's minimum {cfg.limits.o2_stable_s:g} s "
            "(limits.o2_stable_s)"
        )
    flux = _parse_part(FluxStep, data.get("flux"))
    if flux is not None:
        problems.extend(_flux_problems(flux, cfg))
    raw_dips = data.get("dips")
    dips: list[DipStep | None] = (
        [_parse_part(DipStep, d) for d in raw_dips] if isinstance(raw_dips, list) else []
    )
    problems.extend(_dip_problems(dips, flux, cfg))
    return problems


def _coldest_bath_c() -> tuple[float, str]:
    """The coolest bath any alloy of the table allows (liquidus + superheat), and that alloy."""
    alloy = min(ALLOYS.values(), key=lambda a: a.liquidus_c)
    return alloy.liquidus_c + SUPERHEAT_MIN_C, alloy.name


def _ignition_ceiling_c(flux: FluxStep) -> float:
    return ignition_ceiling_c(flux.agent, flux.components)


def _flux_usable(flux: FluxStep) -> bool:
    """Some alloy of the table can be dipped under this flux's autoignition ceiling."""
    return _ignition_ceiling_c(flux) > _coldest_bath_c()[0]


def _flux_problems(flux: FluxStep, cfg: BoothConfig) -> list[str]:
    problems = components_problems("flux.components", flux.agent, flux.components)
    booth = cfg.flux
    mine, theirs = (
        (flux.agent, sorted(flux.components or ())),
        (booth.agent, sorted(booth.components or ())),
    )
    if not problems and mine != theirs:
        # The dip goes into the booth's flux vessel, whatever the recipe says it holds: the
        # booth's over-temperature trip and idle setpoints were judged by the booth's flux.
        problems.append(
            f"flux.agent: the recipe's {flux_kind(flux.agent, flux.components)} is not the "
            f"{flux_kind(booth.agent, booth.components)} of this booth's flux vessel "
            "(flux.agent of the booth config)"
        )
    if not _flux_usable(flux) and not (flux.agent == "mixture" and flux.components is None):
        coldest_c, coldest = _coldest_bath_c()
        ignition_c = flux_autoignition_c(flux.agent, flux.components)
        if flux.agent == "mixture" and flux.components:
            worst = min(flux.components, key=flux_autoignition_c)
            field = "flux.components"
            what = f"a mixture with {_a(worst)} {worst} autoignites at {ignition_c:g} C"
            basis = FLUX_AUTOIGNITION_BASIS[worst]
        else:
            field = "flux.agent"
            what = f"{_a(flux.agent)} {flux.agent} flux autoignites at {ignition_c:g} C"
            basis = FLUX_AUTOIGNITION_BASIS[flux.agent]
        problems.append(
            f"{field}: {what} ({basis}), so a bath with it must stay at or under "
            f"{ignition_c - AUTOIGNITION_MARGIN_C:g} C ({AUTOIGNITION_MARGIN_C:g} C margin); "
            f"no solder is molten there (the coolest, {coldest}, needs {coldest_c:g} C): this "
            "flux cannot be used with molten solder"
        )
    if flux.agent == "alcohol" and flux.solids_wt_pct > ALCOHOL_SOLIDS_MAX_WT_PCT:
        problems.append(
            f"flux.solids_wt_pct: {flux.solids_wt_pct:g} exceeds {ALCOHOL_SOLIDS_MAX_WT_PCT:g} wt% "
            "for an alcohol flux"
        )
    problems.extend(_depth_problems("flux.depth_mm", flux.depth_mm, cfg))
    if flux.depth_mm > cfg.flux.depth_max_mm:
        problems.append(
            f"flux.depth_mm: {flux.depth_mm:g} exceeds the flux vessel's depth_max_mm "
            f"{cfg.flux.depth_max_mm:g}"
        )
    if flux.speed_mm_s > cfg.holder.z_fast_speed_mm_s:
        problems.append(
            f"flux.speed_mm_s: {flux.speed_mm_s:g} exceeds holder.z_fast_speed_mm_s "
            f"{cfg.holder.z_fast_speed_mm_s:g}"
        )
    return problems


def _depth_problems(field: str, depth_mm: float, cfg: BoothConfig) -> list[str]:
    tol = cfg.holder.z_tolerance_mm
    least = DEPTH_MIN_TOLERANCES * tol
    if depth_mm >= least:
        return []
    return [
        f"{field}: {depth_mm:g} is below {least:g} mm, {DEPTH_MIN_TOLERANCES:g} x "
        f"holder.z_tolerance_mm {tol:g}: a shallower dip cannot be told apart from reaching the "
        "surface"
    ]


def _a(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def _dip_problems(dips: list[DipStep | None], flux: FluxStep | None, cfg: BoothConfig) -> list[str]:
    problems: list[str] = []
    seen_vessels: dict[str, int] = {}
    #: (index, alloy) of the earlier layers that parsed, for claim 26.
    layers: list[tuple[int, str]] = []
    for i, dip in enumerate(dips):
        if dip is None:
            continue
        f = f"dips[{i}]"
        vessel = cfg.vessels.get(dip.vessel)
        if vessel is None:
            problems.append(
                f"{f}.vessel: {dip.vessel!r} is not a vessel of this booth "
                f"(one of {sorted(cfg.vessels)})"
            )
        elif dip.vessel in seen_vessels:
            problems.append(
                f"{f}.vessel: {dip.vessel!r} is already used by dips[{seen_vessels[dip.vessel]}]; "
                "a vessel holds one alloy"
            )
        else:
            seen_vessels[dip.vessel] = i
        problems.extend(_depth_problems(f"{f}.depth_mm", dip.depth_mm, cfg))
        if vessel is not None and dip.depth_mm > vessel.depth_max_mm:
            problems.append(
                f"{f}.depth_mm: {dip.depth_mm:g} exceeds vessels.{dip.vessel}.depth_max_mm "
                f"{vessel.depth_max_mm:g}"
            )
        for name in ("entry_speed_mm_s", "withdraw_speed_mm_s"):
            speed = float(getattr(dip, name))
            if speed > cfg.holder.z_fast_speed_mm_s:
                problems.append(
                    f"{f}.{name}: {speed:g} exceeds holder.z_fast_speed_mm_s "
                    f"{cfg.holder.z_fast_speed_mm_s:g}"
                )
        top_c = dip.setpoint_c + dip.band_c
        if top_c >= cfg.limits.temp_max_c:
            problems.append(
                f"{f}.setpoint_c: setpoint + band_c = {top_c:g} must stay under the booth's "
                f"over-temperature trip limits.temp_max_c {cfg.limits.temp_max_c:g}"
            )
        # An unusable flux is reported once, at the flux (_flux_problems), not at every dip.
        if flux is not None and _flux_usable(flux):
            ignition_c = flux_autoignition_c(flux.agent, flux.components)
            ceiling_c = _ignition_ceiling_c(flux)
            kind = flux_kind(flux.agent, flux.components)
            if top_c >= ceiling_c:
                problems.append(
                    f"{f}.setpoint_c: setpoint + band_c = {top_c:g} must stay under "
                    f"{ceiling_c:g} C, "
                    f"{AUTOIGNITION_MARGIN_C:g} C under the autoignition point of {_a(kind)} "
                    f"{kind} ({ignition_c:g} C)"
                )
        alloy = ALLOYS.get(dip.alloy)
        if alloy is None:
            problems.append(
                f"{f}.alloy: {dip.alloy!r} is not in the alloy table (one of {sorted(ALLOYS)})"
            )
            continue
        floor_c = alloy.liquidus_c + SUPERHEAT_MIN_C
        if dip.setpoint_c < floor_c:
            problems.append(
                f"{f}.setpoint_c: {dip.setpoint_c:g} is below {floor_c:g} C, the liquidus of "
                f"{alloy.name} ({alloy.liquidus_c:g} C) + {SUPERHEAT_MIN_C:g} C"
            )
        if dip.setpoint_c - dip.band_c <= alloy.liquidus_c:
            problems.append(
                f"{f}.band_c: setpoint - band_c = {dip.setpoint_c - dip.band_c:g} must stay above "
                f"the liquidus of {alloy.name} ({alloy.liquidus_c:g} C)"
            )
        for j, earlier_name in layers:
            earlier = ALLOYS[earlier_name]
            most_c = earlier.solidus_c - LAYER_STEP_C
            if alloy.liquidus_c > most_c:
                problems.append(
                    f"{f}.alloy: {alloy.name} (liquidus {alloy.liquidus_c:g} C) must melt at least "
                    f"{LAYER_STEP_C:g} C lower than dips[{j}]'s {earlier.name} "
                    f"(solidus {earlier.solidus_c:g} C): at most {most_c:g} C"
                )
            if top_c >= earlier.solidus_c:
                problems.append(
                    f"{f}.setpoint_c: setpoint + band_c = {top_c:g} must stay under the solidus of "
                    f"dips[{j}]'s {earlier.name} ({earlier.solidus_c:g} C), or that layer remelts"
                )
        layers.append((i, alloy.name))
    return problems
