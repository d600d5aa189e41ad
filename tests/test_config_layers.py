"""Which independent layer covers which device, and the I/O fall-back against the holder."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from booth_ctl.config._booth import config_from_dict
from drivers import ConfigError
from tests._util import CONFIG_DIR

MAPS = CONFIG_DIR / "maps"


def _example() -> dict[str, Any]:
    data = tomllib.loads((CONFIG_DIR / "booth.example.toml").read_text())
    for dev in data["devices"].values():
        if "map" in dev:
            dev["map"] = str(CONFIG_DIR / dev["map"])
    return data


def _map_without(tmp_path: Path, name: str, edit: str, replacement: str) -> str:
    text = (MAPS / name).read_text()
    assert edit in text
    out = tmp_path / name
    out.write_text(text.replace(edit, replacement, 1))
    return str(out)


@pytest.mark.parametrize("model", ["omron-e5cc", "watlow-pm", "autonics-tk4"])
def test_a_controller_without_comm_loss_is_covered_by_the_io_watchdog(model: str) -> None:
    data = _example()
    data["devices"]["heater1"]["map"] = str(MAPS / f"{model}.toml")
    loaded = config_from_dict(data, CONFIG_DIR / "booth.example.toml")
    assert loaded.config.devices["heater1"].comm_timeout_s is None


@pytest.mark.parametrize(
    ("old", "new", "match"),
    [
        pytest.param(
            "poll = false\nsafe_value = false\n",
            "poll = false\n",
            r"devices\.heater1\.map: .*no comm-loss timeout",
            id="without the io covering it the controller is refused",
        ),
        pytest.param(
            # the valve wired straight (not inverted): the module's zero fall-back would drop
            # the part
            "type = \"bool\"\ninvert = true\nwritable = true\npoll = false\nsafe_value = true\n",
            "type = \"bool\"\nwritable = true\npoll = false\nsafe_value = false\n",
            r"vacuum_pump: safe_value False",
            id="a fallback that releases the vacuum is refused",
        ),
        pytest.param(
            "safe_value = false\n",
            "safe_value = true\n",
            r"sets every output to 0",
            id="a safe value the module cannot give is refused",
        ),
    ],
)
def test_an_io_map_edit_that_breaks_a_safety_layer_is_refused(
    tmp_path: Path, old: str, new: str, match: str
) -> None:
    data = _example()
    data["devices"]["io"]["map"] = _map_without(tmp_path, "wago-750-352.toml", old, new)
    with pytest.raises(ConfigError, match=match):
        config_from_dict(data, CONFIG_DIR / "booth.example.toml")


def test_a_controller_with_a_comm_loss_register_must_have_it_set() -> None:
    data = _example()
    data["devices"]["heater1"]["map"] = str(MAPS / "tc-generic.toml")
    with pytest.raises(ConfigError, match=r"devices\.heater1\.comm_timeout_s: required"):
        config_from_dict(data, CONFIG_DIR / "booth.example.toml")
    data["devices"]["heater1"]["comm_timeout_s"] = 2.0
    config_from_dict(data, CONFIG_DIR / "booth.example.toml")
