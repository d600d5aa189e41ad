"""``boothctl config check`` says which layer covers which device (CONTRACT s.4).

Its first line and exit code stay as CONTRACT s.2 has them; the table of layers follows. A
controller without its own comm-loss timeout (the E5CC) must be shown covered by the contactor
that the I/O module's watchdog drops; one with a timeout by that timeout.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from booth_ctl.config._booth import load_config
from booth_ctl.config._coverage import HEADER, coverage
from tests._util import CONFIG_DIR, render_config

BOOTHCTL = str(Path(sys.executable).with_name("boothctl"))


def _rows(path: Path) -> dict[str, tuple[str, str]]:
    return {name: (model, what) for name, model, what in coverage(load_config(path))}


def test_generic_booth_each_device_by_its_own_layer() -> None:
    rows = _rows(CONFIG_DIR / "booth-sim.toml")
    assert set(rows) == {"heater1", "io", "holder", "o2"}
    model, what = rows["heater1"]
    assert model == "temp_controller, tc-generic"
    assert what.startswith("own comm-loss timeout: yes, 2 s")
    assert "also heater_contactor on io, opened by its watchdog 500 ms" in what
    assert rows["io"][1].startswith("watchdog 500 ms -> outputs to their substitute values")
    assert (
        "heater_contactor off, n2_maintain on, exhaust_fan on, vacuum_pump hold, vacuum_valve hold"
        in rows["io"][1]
    )
    assert rows["holder"][1] == "own comm-loss timeout 1 s (withdraws to the top)"
    assert rows["o2"][1].startswith("stale after 1 s -> O2 not good")


def test_vendor_booth_the_e5cc_is_covered_by_the_couplers_watchdog() -> None:
    rows = _rows(CONFIG_DIR / "booth-sim-vendor.toml")
    model, what = rows["heater1"]
    assert model == "temp_controller, omron-e5cc"
    assert what == (
        "own comm-loss timeout: none -> covered by heater_contactor on io, opened by its "
        "watchdog 500 ms"
    )
    assert rows["io"] == (
        "remote_io, wago-750-352",
        "watchdog 500 ms -> every output to 0 (heater_contactor off, n2_maintain on, "
        "exhaust_fan on, vacuum_pump on, vacuum_valve on)",
    )


def test_the_table_follows_the_coupler_watchdog_time(tmp_path: Path) -> None:
    def edit(d: dict[str, Any]) -> None:
        d["devices"]["io"]["watchdog_ms"] = 300

    rows = _rows(render_config(tmp_path, "booth-sim-vendor.toml", overrides=edit))
    assert rows["heater1"][1].endswith("opened by its watchdog 300 ms")
    assert rows["io"][1].startswith("watchdog 300 ms")


@pytest.mark.timeout(60)
def test_config_check_prints_the_table_after_the_valid_line() -> None:
    path = CONFIG_DIR / "booth.example.toml"
    r = subprocess.run(
        [BOOTHCTL, "config", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert r.returncode == 0 and r.stderr == "", r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == f"{path}: valid (booth booth-01, 4 devices)"
    assert lines[1] == HEADER
    assert lines[2].split() == ["device", "kind,", "map", "covered", "by"]
    table = {line.split()[0]: line for line in lines[3:]}
    assert set(table) == {"heater1", "io", "holder", "o2"}
    assert "none -> covered by heater_contactor on io" in table["heater1"]
    assert "watchdog 500 ms" in table["io"]
