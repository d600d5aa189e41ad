"""Configurations that would lift a rule of CONTRACT s.4 are refused, by ``config check`` and by
``boothctl run`` alike, with the same lines naming the field and the bound.

Each case below was accepted as valid before the review (docs/safety.md, "Review findings:
configuration", items 1-6 of the review); each now makes ``config check`` exit 1 and the daemon
refuse to start (exit 2) before it opens anything.
"""

from __future__ import annotations

import copy
import logging
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from booth_ctl.cli import main
from booth_ctl.cli._common import EXIT_REFUSED, EXIT_USAGE
from tests._util import CONFIG_DIR, render_config

Edit = Callable[[dict[str, Any], Path], None]


def _set(section: str, key: str, value: Any) -> Edit:
    def edit(data: dict[str, Any], _: Path) -> None:
        node = data
        for part in section.split("."):
            node = node[part]
        node[key] = value

    return edit


def _second_vessel(controller: str) -> Edit:
    def edit(data: dict[str, Any], _: Path) -> None:
        data["vessels"]["solder2"] = {**data["vessels"]["solder1"], "station": 3}
        data["vessels"]["solder2"]["controller"] = controller

    return edit


def _spare_controller(data: dict[str, Any], _: Path) -> None:
    data["devices"]["heater2"] = copy.deepcopy(data["devices"]["heater1"])
    data["devices"]["heater2"]["transport"]["unit"] = 2


def _second_io(data: dict[str, Any], _: Path) -> None:
    data["devices"]["io2"] = copy.deepcopy(data["devices"]["io"])


def _rename_io(data: dict[str, Any], _: Path) -> None:
    data["devices"]["io.main"] = data["devices"].pop("io")


def _cut_map(device: str, point: str) -> Edit:
    """The device's map without ``point``: as a register map that forgot it."""

    def edit(data: dict[str, Any], tmp_path: Path) -> None:
        source = Path(data["devices"][device]["map"])
        regmap = tomllib.loads(source.read_text(encoding="utf-8"))
        regmap["points"].pop(point, None)
        regmap.get("bits", {}).pop(point, None)
        # and the bits read from it, which a map that forgot the point could not have either
        for name, bit in list(regmap.get("bits", {}).items()):
            if point in (bit.get("point"), bit.get("written_by")):
                del regmap["bits"][name]
        cut = tmp_path / f"cut-{device}-{point}.toml"
        cut.write_text(tomli_w.dumps(regmap), encoding="utf-8")
        data["devices"][device]["map"] = str(cut)

    return edit


def _ether_booth_hot_idle(data: dict[str, Any], _: Path) -> None:
    data["flux"]["agent"] = "ether"  # autoignites at 160 C: the solder may reach 110 at most
    data["limits"]["temp_max_c"] = 100.0


def _gap_within_tolerances(data: dict[str, Any], _: Path) -> None:
    data["holder"].update(z_tolerance_mm=2.0, approach_gap_mm=3.0)


def _no_flux_agent(data: dict[str, Any], _: Path) -> None:
    del data["flux"]["agent"]


#: (case, edit, what every refusal line together must name: the field and the bound).
CASES: list[tuple[str, Edit, tuple[str, ...]]] = [
    # 1. "top" in the flux (60 mm), or within the margin of its surface
    ("travel_in_flux", _set("holder", "z_travel_mm", 70.0),
     ("holder.z_travel_mm", "flux.surface_z_mm 60")),
    ("travel_near_flux", _set("holder", "z_travel_mm", 55.0),
     ("holder.z_travel_mm", "within 10 mm of flux.surface_z_mm 60", "at most 49.5")),
    # 2. two vessels on one controller; a controller no vessel uses
    ("shared_controller", _second_vessel("heater1"),
     ("vessels.solder2.controller", "already heats vessels.solder1")),
    ("unused_controller", _spare_controller,
     ("devices.heater2", "no vessel names")),
    ("second_io_module", _second_io, ("devices: 2 devices of kind 'remote_io'",)),
    # 3. a device name that is not a plain identifier
    ("dotted_device_name", _rename_io, ("devices.io.main", "plain identifier")),
    # 4. a map without a point the runtime relies on
    ("no_heater_contactor", _cut_map("io", "heater_contactor"),
     ("devices.io.map", "writable point 'heater_contactor'")),
    ("no_door_input", _cut_map("io", "door_closed"),
     ("devices.io.map", "point or bit 'door_closed'")),
    ("no_vacuum_input", _cut_map("io", "vacuum_kpa"),
     ("devices.io.map", "'vacuum_kpa'")),
    ("no_heater_run", _cut_map("heater1", "run"),
     ("devices.heater1.map", "writable point 'run'")),
    ("no_thermocouple_bit", _cut_map("heater1", "tc_open"),
     ("devices.heater1.map", "'tc_open'")),
    ("no_holder_target", _cut_map("holder", "z_target_mm"),
     ("devices.holder.map", "writable point 'z_target_mm'")),
    ("no_watchdog_refresh", _cut_map("io", "watchdog_refresh"),
     ("devices.io.map", "writable point 'watchdog_refresh'")),
    # 5. bounds on every safety-relevant number
    ("o2_stable_tiny", _set("limits", "o2_stable_s", 0.01),
     ("limits.o2_stable_s", "greater than or equal to 1")),
    ("vacuum_hold_tiny", _set("holder", "vacuum_hold_kpa", 0.01),
     ("holder.vacuum_hold_kpa", "greater than or equal to 20")),
    ("volume_tiny", _set("booth", "volume_l", 1e-6),
     ("booth.volume_l", "greater than or equal to 0.5")),
    ("runaway_budget_huge", _set("limits", "runaway_max_error_c_s", 1e9),
     ("limits.runaway_max_error_c_s", "less than or equal to 3600")),
    ("runaway_hysteresis_wide", _set("limits", "runaway_hysteresis_c", 100.0),
     ("limits.runaway_hysteresis_c", "less than or equal to 25")),
    ("heating_gain_tiny", _set("limits", "heating_check_gain_c", 1e-6),
     ("limits.heating_check_gain_c", "greater than or equal to 0.5")),
    ("stuck_on_rise_wide", _set("limits", "stuck_on_rise_c", 100.0),
     ("limits.stuck_on_rise_c", "less than or equal to 25")),
    ("approach_gap_zero", _set("holder", "approach_gap_mm", 0.0),
     ("holder.approach_gap_mm", "greater than or equal to 2")),
    ("approach_gap_under_tolerances", _gap_within_tolerances,
     ("holder.approach_gap_mm", "3 is below 4 mm", "z_tolerance_mm 2")),
    ("o2_stale_long", _set("limits", "o2_stale_s", 10.0),
     ("limits.o2_stale_s", "less than or equal to 5")),
    ("temp_stale_long", _set("limits", "temp_stale_s", 10.0),
     ("limits.temp_stale_s", "less than or equal to 5")),
    ("o2_frozen_long", _set("limits", "o2_frozen_s", 3600.0),
     ("limits.o2_frozen_s", "less than or equal to 300")),
    # 6. the over-temperature trip and the idle setpoints under the flux's autoignition point
    ("trip_over_alcohol_ignition", _set("limits", "temp_max_c", 380.0),
     ("limits.temp_max_c", "380 must stay under 313 C", "alcohol")),
    ("trip_at_the_ceiling", _set("limits", "temp_max_c", 313.0),
     ("limits.temp_max_c", "313 must stay under 313 C")),
    ("idle_over_ether_ignition", _ether_booth_hot_idle,
     ("vessels.solder1.idle_setpoint_c", "under 110 C", "ether")),
    ("flux_class_required", _no_flux_agent, ("flux.agent", "Field required")),
]  # fmt: skip


@pytest.fixture
def root_logging() -> Iterator[None]:
    """``boothctl run`` sets up the root logger for the journal; put it back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _config(tmp_path: Path, edit: Edit) -> Path:
    return render_config(tmp_path, overrides=lambda data: edit(data, tmp_path))


def _check(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    code = main(["config", "check", str(path)])
    out = capsys.readouterr()
    return code, out.err.splitlines()


def _run(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as info:
        main(["run", "--config", str(path), "--log-level", "warning"])
    return int(str(info.value.code)), capsys.readouterr().err.strip()


@pytest.mark.usefixtures("root_logging")
@pytest.mark.parametrize(("case", "edit", "names"), CASES, ids=[c[0] for c in CASES])
def test_check_and_run_refuse_with_the_same_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, edit: Edit, names: tuple[str]
) -> None:
    path = _config(tmp_path, edit)
    code, lines = _check(path, capsys)
    assert code == EXIT_REFUSED, (case, lines)
    joined = "\n".join(lines)
    for name in names:
        assert name in joined, (case, name, lines)
    run_code, run_err = _run(path, capsys)
    assert run_code == EXIT_USAGE
    assert run_err == "boothctl: invalid config: " + "; ".join(lines)


def test_every_shipped_config_passes_check_and_the_run_check(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from booth_ctl.config._booth import load_config

    for path in sorted(CONFIG_DIR.glob("*.toml")):
        code, lines = _check(path, capsys)
        assert code == 0 and lines == [], (path, lines)
        load_config(path)


def test_a_chain_hanger_needs_the_hook_input_not_the_vacuum(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A point needed only with one holder kind is required exactly with that kind."""

    def chain_without_vacuum(data: dict[str, Any], tmp: Path) -> None:
        data["holder"]["kind"] = "chain"
        for point in ("vacuum_kpa", "vacuum_pump", "vacuum_valve"):
            _cut_map("io", point)(data, tmp)
        data.pop("sim", None)

    code, lines = _check(_config(tmp_path / "a", chain_without_vacuum), capsys)
    assert code == 0, lines

    def chain_without_hook(data: dict[str, Any], tmp: Path) -> None:
        data["holder"]["kind"] = "chain"
        _cut_map("io", "hook_engaged")(data, tmp)

    code, lines = _check(_config(tmp_path / "b", chain_without_hook), capsys)
    assert code == EXIT_REFUSED and "'hook_engaged'" in "\n".join(lines), lines


def test_the_daemon_process_refuses_to_start_naming_field_and_bound(tmp_path: Path) -> None:
    """End to end, once: the installed entry point exits 2 before opening anything."""
    path = _config(tmp_path, _set("limits", "o2_stable_s", 0.01))
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("boothctl")), "run", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == EXIT_USAGE, proc.stderr
    assert "limits.o2_stable_s" in proc.stderr and "greater than or equal to 1" in proc.stderr
    assert not (tmp_path / "run" / "records.sqlite3").exists()  # nothing was opened
