"""The config check computes each RS-485 line's load and refuses one that cannot keep its stale
limits, naming the numbers (pure: no I/O beyond reading the shipped configs)."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

import pytest

from booth_ctl.config._booth import config_from_dict, load_config
from booth_ctl.config._lines import LINE_LOAD_MAX, line_loads
from drivers import ConfigError

CONFIG = Path(__file__).resolve().parents[2] / "config"


def _line_dict() -> dict[str, Any]:
    return tomllib.loads((CONFIG / "booth-sim-line.toml").read_text())


def test_the_two_vessel_line_config_loads_and_fits_its_line() -> None:
    loaded = load_config(CONFIG / "booth-sim-line.toml")
    (line,) = line_loads(loaded.config.devices, loaded.maps)
    assert line.devices == ("heater1", "heater2") and line.baudrate == 19200
    assert 0 < line.load <= LINE_LOAD_MAX


def _four_heaters(data: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    data = copy.deepcopy(data)
    for n in (3, 4):
        dev = copy.deepcopy(data["devices"]["heater2"])
        dev["transport"]["unit"] = n
        data["devices"][f"heater{n}"] = dev
        vessel = copy.deepcopy(data["vessels"]["solder2"])
        vessel["controller"] = f"heater{n}"
        vessel["station"] = 2 + n
        data["vessels"][f"solder{n}"] = vessel
    for n in (1, 2, 3, 4):
        data["devices"][f"heater{n}"].update(overrides)
    return data


def test_an_overloaded_line_is_refused_with_its_numbers() -> None:
    # Four controllers polled at 10 Hz on one 19200 baud line: more than the line carries.
    data = _four_heaters(_line_dict(), poll_hz=10.0)
    with pytest.raises(ConfigError) as err:
        config_from_dict(data, CONFIG / "booth-sim-line.toml")
    message = str(err.value)
    assert "heater1, heater2, heater3, heater4 share /tmp/booth-sim-line/rs485-1" in message
    assert "at 19200 baud" in message and "requests/s take" in message


def test_a_stale_limit_the_line_cannot_keep_is_refused() -> None:
    # At 3 Hz the load fits, but a round of four units with one silent is longer than stale_s/2.
    data = _four_heaters(_line_dict(), poll_hz=3.0, stale_s=0.7)
    with pytest.raises(
        ConfigError,
        match=r"devices\.heater1\.stale_s: 0\.7 s is shorter than 2 "
        r"polls of .* at 19200 baud \(2 x \d+ ms",
    ):
        config_from_dict(data, CONFIG / "booth-sim-line.toml")
    # The same line is accepted at a higher baud rate.
    fast = _four_heaters(_line_dict(), poll_hz=3.0, stale_s=0.7)
    for n in (1, 2, 3, 4):
        fast["devices"][f"heater{n}"]["transport"]["baudrate"] = 115200
        fast["devices"][f"heater{n}"]["timeout_s"] = 0.03
    config_from_dict(fast, CONFIG / "booth-sim-line.toml")


def test_four_controllers_on_19200_fit_when_paced() -> None:
    """The bench's booth: four controllers on one 19200 line at 3 Hz, stale_s 1.0 s."""
    data = _four_heaters(_line_dict(), poll_hz=3.0, stale_s=1.0)
    loaded = config_from_dict(data, CONFIG / "booth-sim-line.toml")
    (line,) = line_loads(loaded.config.devices, loaded.maps)
    assert len(line.devices) == 4 and line.load <= LINE_LOAD_MAX
