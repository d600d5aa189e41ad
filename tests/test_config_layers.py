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


def _io_map_edit_is_refused(tmp_path: Path, edit: str, replacement: str, match: str) -> None:
    """The example booth, its I/O module's map with ``edit`` replaced, is refused: ``match``."""
    data = _example()
    data["devices"]["io"]["map"] = _map_without(tmp_path, "wago-750-352.toml", edit, replacement)
    with pytest.raises(ConfigError, match=match):
        config_from_dict(data, CONFIG_DIR / "booth.example.toml")


@pytest.mark.parametrize("model", ["omron-e5cc", "watlow-pm", "autonics-tk4"])
def test_a_controller_without_comm_loss_is_covered_by_the_io_watchdog(model: str) -> None:
    data = _example()
    data["devices"]["heater1"]["map"] = str(MAPS / f"{model}.toml")
    loaded = config_from_dict(data, CONFIG_DIR / "booth.example.toml")
    assert loaded.config.devices["heater1"].comm_timeout_s is None


def test_without_the_io_covering_it_the_controller_is_refused(tmp_path: Path) -> None:
    _io_map_edit_is_refused(
        tmp_path,
        "poll = false\nsafe_value = false\n",
        "poll = false\n",
        r"devices\.heater1\.map: .*no comm-loss timeout",
    )


def test_a_fallback_that_releases_the_vacuum_is_refused(tmp_path: Path) -> None:
    # the valve wired straight (not inverted): the module's zero fall-back would drop the part
    _io_map_edit_is_refused(
        tmp_path,
        'address = 4\nread_address = 0x0204\ntype = "bool"\ninvert = true\nwritable = true\n'
        "poll = false\nsafe_value = true\n",
        'address = 4\nread_address = 0x0204\ntype = "bool"\nwritable = true\npoll = false\n'
        "safe_value = false\n",
        r"vacuum_pump: safe_value False",
    )


@pytest.mark.parametrize(("point", "address"), [("n2_maintain", 2), ("exhaust_fan", 3)])
def test_a_fallback_that_stops_n2_or_the_exhaust_is_refused(
    tmp_path: Path, point: str, address: int
) -> None:
    # wired straight (not inverted): the module's zero fall-back would stop N2 or the exhaust
    # over a hot bath (docs/safety-design.md, safe state)
    _io_map_edit_is_refused(
        tmp_path,
        f'address = {address}\nread_address = 0x020{address}\ntype = "bool"\ninvert = true\n'
        "writable = true\npoll = false\nsafe_value = true\n",
        f'address = {address}\nread_address = 0x020{address}\ntype = "bool"\n'
        "writable = true\npoll = false\nsafe_value = false\n",
        rf"{point}: safe_value False: .* True or 'hold'",
    )


def test_a_safe_value_the_module_cannot_give_is_refused(tmp_path: Path) -> None:
    _io_map_edit_is_refused(
        tmp_path, "safe_value = false\n", "safe_value = true\n", r"sets every output to 0"
    )


def test_a_controller_with_a_comm_loss_register_must_have_it_set() -> None:
    data = _example()
    data["devices"]["heater1"]["map"] = str(MAPS / "tc-generic.toml")
    with pytest.raises(ConfigError, match=r"devices\.heater1\.comm_timeout_s: required"):
        config_from_dict(data, CONFIG_DIR / "booth.example.toml")
    data["devices"]["heater1"]["comm_timeout_s"] = 2.0
    config_from_dict(data, CONFIG_DIR / "booth.example.toml")
