"""The simulator's reading of the booth config: shared sections leniently, ``[sim]`` strictly."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest

from drivers import ConfigError
from sim_hw import load_sim_config, sim_config_from_dict
from tests._util import CONFIG_DIR


def _data(template: str = "booth-sim.toml") -> dict[str, Any]:
    return tomllib.loads((CONFIG_DIR / template).read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", ["booth-sim.toml", "booth-sim-cold.toml"])
def test_shipped_configs_load(name: str) -> None:
    loaded = load_sim_config(CONFIG_DIR / name)
    sim = loaded.config.sim
    assert set(loaded.maps) == {"heater1", "io", "holder"}
    assert loaded.control_socket.name == "sim.sock"
    assert sim.vessels["solder1"].heater_w > 0
    assert sim.io_safe_outputs["vacuum_pump"] == "hold"


def test_the_warm_config_starts_molten_and_part_purged_with_a_fast_analyzer() -> None:
    sim = load_sim_config(CONFIG_DIR / "booth-sim.toml").config.sim
    assert sim.start_temp_c > sim.vessels["solder1"].liquidus_c
    assert sim.start_o2_ppm < 1000
    assert sim.o2_period_ms == 200 and sim.o2_t90_ms <= 300


def test_the_cold_config_starts_solid_in_air() -> None:
    sim = load_sim_config(CONFIG_DIR / "booth-sim-cold.toml").config.sim
    assert sim.start_temp_c == 25.0 and sim.start_o2_ppm == 209_000.0


def test_shared_sections_are_read_leniently() -> None:
    data = _data()
    data["limits"]["something_new"] = 1
    data["holder"]["another"] = "x"
    sim_config_from_dict(data, CONFIG_DIR / "booth-sim.toml")


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda d: d["sim"].update(o2_perod_ms=100), r"sim\.o2_perod_ms: Extra inputs"),
        (lambda d: d["sim"].update(o2_t90_ms=0), r"sim\.o2_t90_ms: .*greater than or equal to 1"),
        (lambda d: d["sim"]["io_safe_outputs"].update(siren=True), r"io_safe_outputs\.siren"),
        (lambda d: d["sim"]["vessels"].update(solder9={}), r"sim\.vessels\.solder9: no such"),
        (lambda d: d["vessels"]["solder1"].update(controller="io"), r"not a temp_controller"),
        (lambda d: d["devices"].pop("holder"), r"no device of kind 'holder_drive'"),
        (
            lambda d: d["sim"].update(part_release_kpa=40.0),
            r"sim\.part_release_kpa: 40 must be below holder\.vacuum_hold_kpa \(40\)",
        ),
    ],
)
def test_bad_sim_configs_are_refused_by_field(edit: Any, match: str) -> None:
    data = _data()
    edit(data)
    with pytest.raises(ConfigError, match=match):
        sim_config_from_dict(data, CONFIG_DIR / "booth-sim.toml")


def test_a_map_missing_a_point_the_sim_needs_is_refused(tmp_path: Any) -> None:
    text = (CONFIG_DIR / "maps" / "holder-generic.toml").read_text(encoding="utf-8")
    cut = text.replace("[points.fault_reset]", "[points.reset_fault]")
    (tmp_path / "holder.toml").write_text(cut, encoding="utf-8")
    data = _data()
    data["devices"]["holder"]["map"] = str(tmp_path / "holder.toml")
    pattern = r"devices\.holder\.map: .*'fault_reset' \(the simulated holder_drive needs it"
    with pytest.raises(ConfigError, match=pattern):
        sim_config_from_dict(data, CONFIG_DIR / "booth-sim.toml")
