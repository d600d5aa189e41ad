"""Recipes: the demo is valid, and every rule refuses with the field and the bound named."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

import pytest

from booth_ctl.config._alloys import ALLOYS, FLUX_AUTOIGNITION_C
from booth_ctl.config._booth import LoadedConfig, config_from_dict, load_config
from booth_ctl.config._recipe import RecipeError, load_recipe, recipe_from_dict

CONFIG = Path(__file__).resolve().parents[2] / "config"


def _loaded() -> LoadedConfig:
    return load_config(CONFIG / "booth-sim.toml")


def _demo() -> dict[str, Any]:
    return tomllib.loads((CONFIG / "recipes" / "demo.toml").read_text(encoding="utf-8"))


def _booth(
    agent: str = "alcohol",
    components: list[str] | None = None,
    *,
    temp_max_c: float | None = None,
    vessels: int = 1,
) -> LoadedConfig:
    """The simulator's booth with another flux in its flux vessel (and a trip under it)."""
    data = tomllib.loads((CONFIG / "booth-sim.toml").read_text(encoding="utf-8"))
    data["flux"]["agent"] = agent
    if components is not None:
        data["flux"]["components"] = components
    if temp_max_c is not None:
        data["limits"]["temp_max_c"] = temp_max_c
    if vessels == 2:
        data["devices"]["heater2"] = copy.deepcopy(data["devices"]["heater1"])
        data["devices"]["heater2"]["transport"]["unit"] = 2
        # A line of its own: two units at 10 Hz would overload one 19200 baud line (config check).
        data["devices"]["heater2"]["transport"]["port"] = "/tmp/booth-sim-01/rs485-2"
        data["vessels"]["solder2"] = {
            "controller": "heater2",
            "station": 3,
            "surface_z_mm": 80.0,
            "depth_max_mm": 25.0,
            "idle_setpoint_c": 230.0,
        }
    return config_from_dict(data, CONFIG / "booth-sim.toml")


#: A ketone flux (autoignition 404 C) allows a trip at 350 C: room for gold-tin dips.
KETONE_TRIP_C = 350.0


def _ketone_booth(vessels: int = 1) -> LoadedConfig:
    return _booth("ketone", temp_max_c=KETONE_TRIP_C, vessels=vessels)


def _two_vessel_config() -> LoadedConfig:
    return _ketone_booth(vessels=2)


def _problems(data: dict[str, Any], loaded: LoadedConfig | None = None) -> list[str]:
    with pytest.raises(RecipeError) as info:
        recipe_from_dict(data, (loaded or _loaded()).config)
    return info.value.problems


@pytest.mark.parametrize("config", ["booth-sim.toml", "booth-sim-cold.toml"])
def test_demo_recipe_is_valid(config: str) -> None:
    r = load_recipe(CONFIG / "recipes" / "demo.toml", load_config(CONFIG / config).config)
    assert r.holder == "suction"
    assert r.flux.agent == "alcohol"
    assert [d.alloy for d in r.dips] == ["Sn63Pb37"]


def test_every_shipped_recipe_is_valid() -> None:
    for path in sorted((CONFIG / "recipes").glob("*.toml")):
        load_recipe(path, _loaded().config)


def test_alloy_table_has_the_required_alloys_with_their_melting_range() -> None:
    expected = {
        "Au80Sn20": (280, 280),
        "Sn63Pb37": (183, 183),
        "SAC305": (217, 220),
        "Sn96.5Ag3.5": (221, 221),
        "In52Sn48": (118, 118),
    }
    for name, (sol, liq) in expected.items():
        assert (ALLOYS[name].solidus_c, ALLOYS[name].liquidus_c) == (sol, liq)
    for a in ALLOYS.values():
        assert a.solidus_c <= a.liquidus_c
    assert FLUX_AUTOIGNITION_C["alcohol"] <= 399.0  # never more optimistic than isopropanol


def _set(data: dict[str, Any], path: str, value: Any) -> None:
    node: Any = data
    parts = path.split(".")
    for p in parts[:-1]:
        node = node[int(p)] if p.isdigit() else node[p]
    last = parts[-1]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value


_DELETE = object()

CASES = [
    ("o2_limit_ppm", 20000.0, r"^o2_limit_ppm: .*less than or equal to 10000"),
    ("o2_limit_ppm", 0.0, r"^o2_limit_ppm: .*greater than 0"),
    ("o2_stable_s", 0.5, r"^o2_stable_s: 0\.5 is below .*minimum 1 s \(limits\.o2_stable_s\)"),
    ("holder", "chain", r"^holder: 'chain' does not match this booth's holder\.kind 'suction'"),
    ("holder", "hook", r"^holder: Input should be 'suction', 'chain' or 'both'"),
    ("drain_s", -1.0, r"^drain_s: .*greater than or equal to 0"),
    ("flux.agent", "water", r"^flux\.agent: Input should be 'alcohol', 'ketone'"),
    ("flux.solids_wt_pct", 12.0, r"^flux\.solids_wt_pct: 12 exceeds 10 wt% for an alcohol flux"),
    ("flux.depth_mm", 25.0, r"^flux\.depth_mm: 25 exceeds the flux vessel's depth_max_mm 20"),
    ("flux.speed_mm_s", 500.0, r"^flux\.speed_mm_s: 500 exceeds holder\.z_fast_speed_mm_s 200"),
    ("flux.dwell_s", 0.0, r"^flux\.dwell_s: .*greater than 0"),
    ("flux.color", "red", r"^flux\.color: Extra inputs are not permitted"),
    ("flux.agent", _DELETE, r"^flux\.agent: Field required"),
    ("dips.0.vessel", "nope", r"^dips\[0\]\.vessel: 'nope' is not a vessel of this booth"),
    ("dips.0.alloy", "Unobtainium", r"^dips\[0\]\.alloy: 'Unobtainium' is not in the alloy table"),
    ("dips.0.setpoint_c", 195.0, r"^dips\[0\]\.setpoint_c: 195 is below 203 C, the liquidus"),
    ("dips.0.band_c", 70.0, r"^dips\[0\]\.band_c: .*less than or equal to 50"),
    (
        "dips.0.depth_mm",
        30.0,
        r"^dips\[0\]\.depth_mm: 30 exceeds vessels\.solder1\.depth_max_mm 25",
    ),
    ("dips.0.dwell_s", 700.0, r"^dips\[0\]\.dwell_s: .*less than or equal to 600"),
    (
        "dips.0.entry_speed_mm_s",
        300.0,
        r"^dips\[0\]\.entry_speed_mm_s: 300 exceeds holder\.z_fast_speed_mm_s 200",
    ),
    (
        "dips.0.withdraw_speed_mm_s",
        0.0,
        r"^dips\[0\]\.withdraw_speed_mm_s: .*greater than 0",
    ),
    ("dips", [], r"^dips: List should have at least 1 item"),
    ("extra", 1, r"^extra: Extra inputs are not permitted"),
]


@pytest.mark.parametrize(("path", "value", "pattern"), CASES, ids=[c[0] for c in CASES])
def test_each_rule_names_field_and_bound(path: str, value: Any, pattern: str) -> None:
    import re

    data = _demo()
    _set(data, path, value)
    problems = _problems(data)
    assert any(re.search(pattern, p) for p in problems), problems


def test_band_must_stay_above_the_liquidus() -> None:
    data = _demo()
    data["dips"][0].update(setpoint_c=210.0, band_c=30.0)
    problems = _problems(data)
    assert any(
        p.startswith("dips[0].band_c: setpoint - band_c = 180 must stay above") and "183" in p
        for p in problems
    ), problems


def test_setpoint_stays_well_under_the_flux_autoignition_point() -> None:
    data = _demo()
    data["dips"][0].update(setpoint_c=310.0, band_c=10.0)
    problems = _problems(data)
    assert any(
        "dips[0].setpoint_c: setpoint + band_c = 320 must stay under 313 C" in p and "alcohol" in p
        for p in problems
    ), problems
    data["dips"][0].update(setpoint_c=303.0)  # 313 itself is refused: "at or above"
    assert any("= 313 must stay under 313 C" in p for p in _problems(data, _booth(temp_max_c=312)))
    data["flux"]["agent"] = "ketone"
    data["dips"][0].update(setpoint_c=310.0)
    recipe_from_dict(data, _ketone_booth().config)  # ketone ignites higher: 320 is fine


def test_ether_flux_is_refused_with_any_solder_and_the_error_says_why() -> None:
    data = _demo()
    data["flux"]["agent"] = "ether"
    problems = _problems(data)
    assert (
        "flux.agent: an ether flux autoignites at 160 C (diethyl ether), so a bath with it must "
        "stay at or under 110 C (50 C margin); no solder is molten there (the coolest, In52Sn48, "
        "needs 138 C): this flux cannot be used with molten solder"
    ) in problems
    data["dips"][0].update(alloy="In52Sn48", setpoint_c=140.0, band_c=1.0)
    assert any(p.startswith("flux.agent: an ether flux") for p in _problems(data))


def test_mixture_flux_names_its_components_and_takes_the_lowest_autoignition() -> None:
    data = _demo()
    data["flux"]["agent"] = "mixture"
    booth = _booth("mixture", ["alcohol", "ketone"])
    problems = _problems(data, booth)
    assert problems == [
        "flux.components: required for a mixture flux: name its solvent classes (two or more of "
        "alcohol, ketone, ester, ether); it is judged by the lowest autoignition point among them"
    ]
    data["flux"]["components"] = ["ketone", "alcohol"]
    recipe = recipe_from_dict(data, booth.config)  # alcohol's 363 C: 260 C is fine
    assert recipe.flux.components == ["ketone", "alcohol"]
    data["dips"][0].update(setpoint_c=310.0, band_c=10.0)  # fine for ketone, not for alcohol
    assert (
        "dips[0].setpoint_c: setpoint + band_c = 320 must stay under 313 C, 50 C under the "
        "autoignition point of a mixture flux of ketone+alcohol (363 C)"
    ) in _problems(data, booth)
    data["dips"][0].update(setpoint_c=250.0)
    data["flux"]["components"] = ["alcohol", "ether"]
    problems = _problems(data, booth)
    ether = [p for p in problems if p.startswith("flux.components: a mixture with an ether")]
    assert len(ether) == 1 and "(diethyl ether)" in ether[0], problems
    assert "cannot be used with molten solder" in ether[0]


@pytest.mark.parametrize(
    ("agent", "components", "pattern"),
    [
        ("alcohol", ["alcohol", "ketone"], r"^flux\.components: only a mixture flux names"),
        ("mixture", ["ketone", "ketone"], r"^flux\.components: .* names a solvent class twice"),
        ("mixture", ["ketone"], r"^flux\.components: List should have at least 2 items"),
        ("mixture", ["water", "ketone"], r"^flux\.components\[0\]: Input should be 'alcohol'"),
    ],
)
def test_mixture_components_are_checked(agent: str, components: list[str], pattern: str) -> None:
    import re

    data = _demo()
    data["flux"].update(agent=agent, components=components)
    problems = _problems(data)
    assert any(re.search(pattern, p) for p in problems), problems


def test_setpoint_under_the_over_temperature_trip() -> None:
    data = _demo()
    data["flux"]["agent"] = "ketone"
    data["dips"][0].update(alloy="Au80Sn20", setpoint_c=340.0, band_c=10.0)
    problems = _problems(data, _ketone_booth())
    assert any("limits.temp_max_c 350" in p for p in problems), problems


@pytest.mark.parametrize("field", ["flux.depth_mm", "dips.0.depth_mm"])
def test_every_dip_is_deeper_than_the_holder_tolerance_by_a_margin(field: str) -> None:
    import re

    tol = _loaded().config.holder.z_tolerance_mm
    assert tol == 0.5
    data = _demo()
    _set(data, field, 0.3)  # > 0, yet within the tolerance of the surface
    name = field.replace(".0.", "[0].")
    problems = _problems(data)
    pattern = rf"^{re.escape(name)}: 0\.3 is below 1 mm, 2 x holder\.z_tolerance_mm 0\.5"
    assert any(re.search(pattern, p) for p in problems), problems
    _set(data, field, 0.9)
    assert any(p.startswith(f"{name}: 0.9 is below 1 mm") for p in _problems(data))
    _set(data, field, 1.0)
    recipe_from_dict(data, _loaded().config)


def test_depth_margin_follows_the_booth_tolerance() -> None:
    raw = tomllib.loads((CONFIG / "booth-sim.toml").read_text(encoding="utf-8"))
    raw["holder"]["z_tolerance_mm"] = 2.0
    loaded = config_from_dict(raw, CONFIG / "booth-sim.toml")
    data = _demo()  # flux 5 mm (fine), dip 3 mm (< 4 mm)
    problems = _problems(data, loaded)
    assert [p for p in problems if "z_tolerance_mm" in p] == [
        "dips[0].depth_mm: 3 is below 4 mm, 2 x holder.z_tolerance_mm 2: a shallower dip "
        "cannot be told apart from reaching the surface"
    ]


def test_ketone_flux_may_carry_more_solids() -> None:
    data = _demo()
    data["flux"].update(agent="ketone", solids_wt_pct=31.0)
    recipe_from_dict(data, _ketone_booth().config)


def _two_dips(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    data = _demo()
    data["flux"]["agent"] = "ketone"
    base = dict(data["dips"][0])
    data["dips"] = [{**base, "vessel": "solder1", **first}, {**base, "vessel": "solder2", **second}]
    return data


def test_gold_tin_then_tin_lead_is_valid() -> None:
    data = _two_dips(
        {"alloy": "Au80Sn20", "setpoint_c": 320.0}, {"alloy": "Sn63Pb37", "setpoint_c": 230.0}
    )
    r = recipe_from_dict(data, _two_vessel_config().config)
    assert r.vessels() == ["solder1", "solder2"]


def test_later_layer_must_melt_20_c_lower() -> None:
    data = _two_dips(
        {"alloy": "SAC305", "setpoint_c": 250.0}, {"alloy": "Sn96.5Ag3.5", "setpoint_c": 245.0}
    )
    problems = _problems(data, _two_vessel_config())
    assert any(
        p.startswith("dips[1].alloy: Sn96.5Ag3.5 (liquidus 221 C) must melt at least 20 C lower")
        and "at most 197 C" in p
        for p in problems
    ), problems


def test_later_dip_must_not_remelt_the_earlier_layer() -> None:
    data = _two_dips(
        {"alloy": "Au80Sn20", "setpoint_c": 320.0}, {"alloy": "Sn63Pb37", "setpoint_c": 275.0}
    )
    problems = _problems(data, _two_vessel_config())
    assert any("dips[1].setpoint_c" in p and "solidus" in p and "280" in p for p in problems)


def test_one_vessel_holds_one_alloy() -> None:
    data = _two_dips(
        {"alloy": "Au80Sn20", "setpoint_c": 320.0}, {"alloy": "Sn63Pb37", "setpoint_c": 230.0}
    )
    data["dips"][1]["vessel"] = "solder1"
    problems = _problems(data, _two_vessel_config())
    assert any(p.startswith("dips[1].vessel: 'solder1' is already used") for p in problems)


def test_every_problem_is_reported_at_once() -> None:
    data = _demo()
    data["o2_limit_ppm"] = 50000.0
    data["flux"]["solids_wt_pct"] = 15.0
    data["dips"][0]["depth_mm"] = 40.0
    data["dips"][0]["alloy"] = "Nope"
    data["holder"] = "chain"
    problems = _problems(data)
    for field in (
        "o2_limit_ppm",
        "flux.solids_wt_pct",
        "dips[0].depth_mm",
        "dips[0].alloy",
        "holder",
    ):
        assert any(p.startswith(field + ":") for p in problems), (field, problems)


def test_unreadable_and_invalid_toml_files(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="cannot read recipe"):
        load_recipe(tmp_path / "missing.toml", _loaded().config)
    bad = tmp_path / "bad.toml"
    bad.write_text("holder = [", encoding="utf-8")
    with pytest.raises(RecipeError, match="not valid TOML"):
        load_recipe(bad, _loaded().config)
    with pytest.raises(RecipeError, match="a recipe is a table"):
        recipe_from_dict([1, 2], _loaded().config)
