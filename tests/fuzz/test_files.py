"""Corrupt booth configs and recipes: a clear error naming the file and the field, from the
loaders and from ``boothctl config check`` / ``boothctl recipe check`` (exit 1, no traceback)."""

from __future__ import annotations

import copy
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from booth_ctl.config._booth import load_config
from booth_ctl.config._recipe import Recipe, RecipeError, load_recipe
from drivers import ConfigError
from tests._util import CONFIG_DIR, render_config

from ._scale import examples

FILES = settings(
    max_examples=examples(80),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
SIM_CONFIG = CONFIG_DIR / "booth-sim.toml"
DEMO_TEXT = (CONFIG_DIR / "recipes" / "demo.toml").read_text(encoding="utf-8")
BOOTH = load_config(SIM_CONFIG).config

toml_values = st.recursive(
    st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)


def _leaves(data: Any, path: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    if isinstance(data, dict):
        return [p for k, v in data.items() for p in _leaves(v, (*path, k))] or [path]
    if isinstance(data, list) and data and isinstance(data[0], dict):
        return [p for i, v in enumerate(data) for p in _leaves(v, (*path, i))]
    return [path]


def _set(data: Any, path: tuple[str | int, ...], value: Any) -> None:
    for p in path[:-1]:
        data = data[p]
    data[path[-1]] = value


def _mutated(
    doc: dict[str, Any], data: st.DataObject, value: Any, path: Path
) -> tuple[str | int, ...]:
    """Write `doc` to `path` with one leaf (drawn from `data`) set to `value`; the leaf's path."""
    doc = copy.deepcopy(doc)
    where = data.draw(st.sampled_from(_leaves(doc)))
    _set(doc, where, value)
    path.write_text(tomli_w.dumps(doc))
    return where


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "booth_ctl.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def sim_config(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A private copy of the simulator's config (map paths absolute), as a dict."""
    path = render_config(tmp_path_factory.mktemp("cfg"))
    return tomllib.loads(path.read_text(encoding="utf-8"))


# ---------------------------------------------------------------------- configs


def test_an_empty_config_names_the_file_and_every_missing_table(tmp_path: Path) -> None:
    path = tmp_path / "empty.toml"
    path.write_text("")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: ")
    for field in ("booth_id", "mqtt", "records", "holder", "vessels", "devices"):
        assert f"{field}: Field required" in msg


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda d: d["mqtt"].update(port="http"), "mqtt.port"),
        (lambda d: d["mqtt"].update(port=10**30), "mqtt.port"),
        (lambda d: d["mqtt"].update(port=-1), "mqtt.port"),
        (lambda d: d["scan"].update(period_ms=[10]), "scan.period_ms"),
        (lambda d: d["limits"].update(temp_max_c=float("inf")), "limits.temp_max_c"),
        (lambda d: d["limits"].update(temp_max_c=float("nan")), "limits.temp_max_c"),
        (lambda d: d["limits"].update(o2_ready_ppm=1e300), "limits.o2_ready_ppm"),
        (lambda d: d["mqtt"].update(surprise=1), "mqtt.surprise"),
        (lambda d: d.update(unknown_table={"a": 1}), "unknown_table"),
        (lambda d: d.update(booth_id="../etc"), "booth_id"),
        (lambda d: d.update(booth_id=7), "booth_id"),
        (lambda d: d["devices"]["io"].update(poll_hz=0), "devices.io.poll_hz"),
        (lambda d: d["devices"]["io"].update(map="/nonexistent/map.toml"), "devices.io.map"),
    ],
)
def test_wrong_values_name_the_file_and_the_field(
    tmp_path: Path, sim_config: dict[str, Any], edit: Any, field: str
) -> None:
    data = copy.deepcopy(sim_config)
    edit(data)
    path = tmp_path / "booth.toml"
    path.write_text(tomli_w.dumps(data))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: ")
    assert field in str(info.value)


def test_a_corrupt_register_map_names_the_map_file(
    tmp_path: Path, sim_config: dict[str, Any]
) -> None:
    bad_map = tmp_path / "io-bad.toml"
    bad_map.write_text('name = "io"\n[points.door]\ntable = "coil"\naddress = "zero"\n')
    data = copy.deepcopy(sim_config)
    data["devices"]["io"]["map"] = str(bad_map)
    path = tmp_path / "booth.toml"
    path.write_text(tomli_w.dumps(data))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    msg = str(info.value)
    assert "devices.io.map" in msg and str(bad_map) in msg and "points.door.address" in msg


@FILES
@given(cut=st.integers(min_value=0, max_value=10_000))
def test_a_truncated_config_is_refused_naming_the_file(
    tmp_path_factory: pytest.TempPathFactory, sim_config: dict[str, Any], cut: int
) -> None:
    text = tomli_w.dumps(sim_config)
    path = tmp_path_factory.mktemp("trunc") / "booth.toml"
    path.write_text(text[: cut % len(text)])
    try:
        loaded = load_config(path)
    except ConfigError as exc:
        assert str(exc).startswith(f"{path}: ")
    else:
        # A cut in the optional tail (the simulator's own table) leaves a usable config.
        assert loaded.config.booth_id == sim_config["booth_id"]
        assert set(loaded.config.devices) == set(sim_config["devices"])


@FILES
@given(data=st.data(), value=toml_values)
def test_any_field_with_any_value_loads_or_names_the_file(
    tmp_path_factory: pytest.TempPathFactory,
    sim_config: dict[str, Any],
    data: st.DataObject,
    value: Any,
) -> None:
    path = tmp_path_factory.mktemp("mut") / "booth.toml"
    where = _mutated(sim_config, data, value, path)
    try:
        load_config(path)
    except ConfigError as exc:
        msg = str(exc)
        assert msg.startswith(f"{path}: ")
        assert str(where[0]) in msg, (where, value, msg)


# ---------------------------------------------------------------------- recipes


def test_an_empty_recipe_names_every_missing_field(tmp_path: Path) -> None:
    path = tmp_path / "empty.toml"
    path.write_text("")
    with pytest.raises(RecipeError) as info:
        load_recipe(path, BOOTH)
    problems = info.value.problems
    for field in ("holder", "o2_limit_ppm", "o2_stable_s", "flux", "dips"):
        assert f"{field}: Field required" in problems


@pytest.mark.parametrize(
    ("line", "field"),
    [
        ("o2_limit_ppm = nan", "o2_limit_ppm"),
        ("o2_limit_ppm = inf", "o2_limit_ppm"),
        ("o2_limit_ppm = 1e400", "o2_limit_ppm"),
        ("o2_limit_ppm = 20000.0", "o2_limit_ppm"),  # over the absolute cap of the contract
        ("o2_limit_ppm = 99999999999999999999999", "o2_limit_ppm"),
        ("o2_limit_ppm = 'low'", "o2_limit_ppm"),
        ("o2_stable_s = 0.001", "o2_stable_s"),  # under the booth's minimum
        ("holder = ['suction']", "holder"),
        ("surprise = 1", "surprise"),
    ],
)
def test_wrong_recipe_values_name_the_field(tmp_path: Path, line: str, field: str) -> None:
    key = line.split(" = ", maxsplit=1)[0]
    kept = [ln for ln in DEMO_TEXT.splitlines() if not ln.startswith(f"{key} ")]
    body = "\n".join([line, *kept])
    path = tmp_path / "r.toml"
    path.write_text(body)
    with pytest.raises(RecipeError) as info:
        load_recipe(path, BOOTH)
    assert any(p.startswith(f"{field}: ") for p in info.value.problems), info.value.problems


@FILES
@given(cut=st.integers(min_value=0, max_value=10_000))
def test_a_truncated_recipe_is_refused_or_still_whole(
    tmp_path_factory: pytest.TempPathFactory, cut: int
) -> None:
    text = DEMO_TEXT[: cut % len(DEMO_TEXT)]
    path = tmp_path_factory.mktemp("rtrunc") / "r.toml"
    path.write_text(text)
    try:
        recipe = load_recipe(path, BOOTH)
    except RecipeError as exc:
        assert exc.problems and all(":" in p for p in exc.problems)
    else:
        # TOML has no end marker: a cut inside the last value ("20.0" -> "2") can leave a
        # recipe that is still valid, and it is then checked like any other.
        assert isinstance(recipe, Recipe)
        assert recipe.dips and recipe.flux


@FILES
@given(data=st.data(), value=toml_values)
def test_any_recipe_field_with_any_value_is_valid_or_named(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject, value: Any
) -> None:
    path = tmp_path_factory.mktemp("rmut") / "r.toml"
    where = _mutated(tomllib.loads(DEMO_TEXT), data, value, path)
    try:
        load_recipe(path, BOOTH)
    except RecipeError as exc:
        assert any(p.startswith(str(where[0])) for p in exc.problems), (where, exc.problems)


# ---------------------------------------------------------------------- the CLI


@pytest.mark.parametrize(
    ("content", "expect"),
    [
        ("", "booth_id: Field required"),
        ('booth_id = "b1"\n[mqtt\n', "not valid TOML"),
        ('booth_id = "b1"\nbooth_id = "b2"\n', "not valid TOML"),  # a duplicate key
        ('booth_id = "b1"\n[mqtt]\nhost = 1\nport = 1e400\n', "mqtt.port"),
    ],
)
def test_config_check_exits_1_naming_the_problem(tmp_path: Path, content: str, expect: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(content)
    proc = _cli("config", "check", str(path))
    assert proc.returncode == 1, proc
    assert "Traceback" not in proc.stderr
    assert str(path) in proc.stderr and expect in proc.stderr, proc.stderr


def test_config_check_of_a_missing_file(tmp_path: Path) -> None:
    proc = _cli("config", "check", str(tmp_path / "nope.toml"))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "nope.toml" in proc.stderr and "cannot read" in proc.stderr


@pytest.mark.parametrize(
    ("content", "expect"),
    [
        ("", "dips: Field required"),
        (DEMO_TEXT[: len(DEMO_TEXT) // 2] + "\n[[dips\n", "not valid TOML"),
        (DEMO_TEXT.replace("o2_limit_ppm = 1000.0", "o2_limit_ppm = nan"), "o2_limit_ppm"),
        (DEMO_TEXT.replace('vessel = "solder1"', 'vessel = "../solder1"'), "dips[0].vessel"),
    ],
)
def test_recipe_check_exits_1_naming_the_problem(tmp_path: Path, content: str, expect: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(content)
    proc = _cli("recipe", "check", str(path), "--config", str(SIM_CONFIG))
    assert proc.returncode == 1, proc
    assert "Traceback" not in proc.stderr
    assert str(path) in proc.stderr and expect in proc.stderr, proc.stderr
