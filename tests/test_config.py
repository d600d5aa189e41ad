"""The shipped booth configs and register maps load, and bad ones are refused by name."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from booth_ctl._config import config_from_dict, load_config
from drivers import ConfigError

CONFIG = Path(__file__).resolve().parents[1] / "config"


@pytest.mark.parametrize("name", ["booth-sim.toml", "booth-sim-cold.toml"])
def test_shipped_configs_load_with_their_maps(name: str) -> None:
    loaded = load_config(CONFIG / name)
    assert set(loaded.maps) == {"heater1", "io", "holder"}
    assert loaded.maps["heater1"].bits["tc_open"].word == "status"


def _sim_dict() -> dict:
    return tomllib.loads((CONFIG / "booth-sim.toml").read_text())


def test_unknown_key_is_refused_by_name() -> None:
    data = _sim_dict()
    data["limits"]["o2_max"] = 5
    with pytest.raises(ConfigError, match=r"limits\.o2_max: Extra inputs are not permitted"):
        config_from_dict(data, CONFIG / "booth-sim.toml")


def test_out_of_bound_value_names_field_and_bound() -> None:
    data = _sim_dict()
    data["devices"]["io"]["transport"]["port"] = 70000
    with pytest.raises(ConfigError, match=r"devices\.io\.transport\.tcp\.port: .*65535"):
        config_from_dict(data, CONFIG / "booth-sim.toml")


def test_vessel_controller_must_be_a_temperature_controller() -> None:
    data = _sim_dict()
    data["vessels"]["solder1"]["controller"] = "io"
    with pytest.raises(ConfigError, match=r"vessels\.solder1\.controller"):
        config_from_dict(data, CONFIG / "booth-sim.toml")


def test_missing_map_file_is_named(tmp_path: Path) -> None:
    data = _sim_dict()
    data["devices"]["io"]["map"] = "maps/nope.toml"
    with pytest.raises(ConfigError, match=r"devices\.io\.map: .*nope\.toml.*cannot read"):
        config_from_dict(data, CONFIG / "booth-sim.toml")
