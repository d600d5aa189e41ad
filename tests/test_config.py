"""The shipped booth configs and register maps load, and bad ones are refused by name."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from booth_ctl.config._booth import config_from_dict, load_config
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


@pytest.mark.parametrize(
    ("device", "map_name", "point", "pattern"),
    [
        ("holder", "holder-generic.toml", "heartbeat", r"writable point 'heartbeat'"),
        ("heater1", "tc-generic.toml", "comm_timeout_s", r"writable point 'comm_timeout_s'"),
        ("io", "io-generic.toml", "watchdog_tripped", r"point or bit 'watchdog_tripped'"),
    ],
)
def test_a_map_without_a_safety_layer_point_is_refused(
    tmp_path: Path, device: str, map_name: str, point: str, pattern: str
) -> None:
    regmap = tomllib.loads((CONFIG / "maps" / map_name).read_text())
    regmap["points"].pop(point, None)
    regmap.get("bits", {}).pop(point, None)
    lines = [f"name = {regmap['name']!r}"]
    for section in ("points", "bits"):
        for name, fields in regmap.get(section, {}).items():
            lines.append(f"[{section}.{name}]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in fields.items()]
    (tmp_path / map_name).write_text("\n".join(lines) + "\n")
    data = _sim_dict()
    data["devices"][device]["map"] = str(tmp_path / map_name)
    _refused(data, rf"devices\.{device}\.map: map .* has no .*{pattern} \(the .*safety layer")


def _refused(data: dict, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        config_from_dict(data, CONFIG / "booth-sim.toml")


@pytest.mark.parametrize(
    ("device", "key", "pattern"),
    [
        ("io", "watchdog_ms", r"devices\.io\.watchdog_ms: required for a remote_io .*100-2000 ms"),
        (
            "heater1",
            "comm_timeout_s",
            r"devices\.heater1\.comm_timeout_s: required for a temp_controller .*0\.5-10 s",
        ),
        (
            "holder",
            "comm_timeout_s",
            r"devices\.holder\.comm_timeout_s: required for a holder_drive \(it withdraws .*0\.5-",
        ),
    ],
)
def test_device_watchdogs_are_required(device: str, key: str, pattern: str) -> None:
    # Review S3: CONTRACT s.4, the I/O module and the controllers make themselves safe when the
    # supervisor goes silent; no configuration may leave that out.
    data = _sim_dict()
    del data["devices"][device][key]
    _refused(data, pattern)


@pytest.mark.parametrize(
    ("device", "key", "value", "pattern"),
    [
        ("io", "watchdog_ms", 0, r"devices\.io\.watchdog_ms: .*greater than or equal to 100"),
        ("io", "watchdog_ms", 99, r"devices\.io\.watchdog_ms: .*greater than or equal to 100"),
        ("io", "watchdog_ms", 2001, r"devices\.io\.watchdog_ms: .*less than or equal to 2000"),
        (
            "heater1",
            "comm_timeout_s",
            0,
            r"devices\.heater1\.comm_timeout_s: .*greater than or equal to 0\.5",
        ),
        (
            "heater1",
            "comm_timeout_s",
            10.5,
            r"devices\.heater1\.comm_timeout_s: .*less than or equal to 10",
        ),
        ("holder", "comm_timeout_s", 0.4, r"devices\.holder\.comm_timeout_s: .*or equal to 0\.5"),
        (
            "o2",
            "comm_timeout_s",
            1.0,
            r"devices\.o2: .*comm_timeout_s applies to a temp_controller or a holder_drive only",
        ),
    ],
)
def test_device_watchdogs_are_bounded(device: str, key: str, value: float, pattern: str) -> None:
    data = _sim_dict()
    data["devices"][device][key] = value
    _refused(data, pattern)


def test_device_watchdog_bounds_are_inclusive() -> None:
    for wd, tmo in ((100, 0.5), (2000, 10.0)):
        data = _sim_dict()
        data["devices"]["io"]["watchdog_ms"] = wd
        data["devices"]["heater1"]["comm_timeout_s"] = tmo
        cfg = config_from_dict(data, CONFIG / "booth-sim.toml").config
        assert cfg.devices["io"].watchdog_ms == wd
        assert cfg.devices["heater1"].comm_timeout_s == tmo


@pytest.mark.parametrize(
    ("device", "value", "pattern"),
    [
        ("io", 2.5, r"devices\.io: .*stale_s: 2\.5 s exceeds 2 s, the most for a remote_io"),
        (
            "holder",
            3.0,
            r"devices\.holder: .*stale_s: 3 s exceeds 2 s, the most for a holder_drive",
        ),
        ("o2", 6.0, r"devices\.o2\.stale_s: .*less than or equal to 5"),
        ("heater1", 60.0, r"devices\.heater1\.stale_s: .*less than or equal to 5"),
    ],
)
def test_stale_s_is_capped_per_kind(device: str, value: float, pattern: str) -> None:
    # Review S5: a door or e-stop reading must not be trusted for a minute.
    data = _sim_dict()
    data["devices"][device]["stale_s"] = value
    _refused(data, pattern)


def test_stale_s_caps_are_inclusive() -> None:
    data = _sim_dict()
    data["devices"]["io"]["stale_s"] = 2.0
    data["devices"]["holder"]["stale_s"] = 2.0
    data["devices"]["o2"]["stale_s"] = 5.0
    data["devices"]["heater1"]["stale_s"] = 5.0
    config_from_dict(data, CONFIG / "booth-sim.toml")


def test_the_rest_poll_rate_defaults_to_5_hz_within_poll_hz_and_stale_s() -> None:
    cfg = load_config(CONFIG / "booth-sim.toml").config
    assert cfg.devices["io"].rest_hz == 5.0
    assert cfg.devices["heater1"].rest_hz == 5.0
    data = _sim_dict()
    data["devices"]["io"]["poll_hz"] = 4.0
    data["devices"]["holder"]["stale_s"] = 0.1  # a tight bound needs 20 polls a second
    cfg = config_from_dict(data, CONFIG / "booth-sim.toml").config
    assert cfg.devices["io"].rest_hz == 4.0
    assert cfg.devices["holder"].rest_hz == 20.0
    data = _sim_dict()
    data["devices"]["io"]["rest_poll_hz"] = 50.0  # rest polling can be switched off
    assert config_from_dict(data, CONFIG / "booth-sim.toml").config.devices["io"].rest_hz == 50.0


@pytest.mark.parametrize(
    ("key", "value", "pattern"),
    [
        ("rest_poll_hz", 60.0, r"devices\.io: .*rest_poll_hz: 60 Hz exceeds poll_hz = 50 Hz"),
        (
            "rest_poll_hz",
            2.0,
            r"devices\.io: .*rest_poll_hz: 2 Hz polls too seldom for stale_s = 0\.5 s "
            r"\(at least 4 Hz",
        ),
        ("poll_hz", 3.0, r"devices\.io: .*poll_hz: 3 Hz polls too seldom for stale_s = 0\.5 s"),
        ("rest_poll_hz", 0.0, r"devices\.io\.rest_poll_hz: .*greater than 0"),
    ],
)
def test_poll_rates_are_bounded_by_each_other_and_by_stale_s(
    key: str, value: float, pattern: str
) -> None:
    data = _sim_dict()
    data["devices"]["io"][key] = value
    _refused(data, pattern)


def test_example_config_has_the_watchdogs() -> None:
    data = tomllib.loads((CONFIG / "booth.example.toml").read_text())
    for dev in data["devices"].values():
        if "map" in dev:
            dev["map"] = str(CONFIG / dev["map"])
    cfg = config_from_dict(data, CONFIG / "booth.example.toml").config
    assert cfg.devices["io"].watchdog_ms == 500
    # The E5CC has no comm-loss timeout: the I/O watchdog dropping the contactor covers it.
    assert cfg.devices["heater1"].comm_timeout_s is None


def test_records_keep_times_default_and_shipped() -> None:
    data = _sim_dict()
    shipped = config_from_dict(data, CONFIG / "booth-sim.toml").config.records
    assert (shipped.audit_keep_days, shipped.events_keep_days) == (90, 30)
    del data["records"]["audit_keep_days"], data["records"]["events_keep_days"]
    default = config_from_dict(data, CONFIG / "booth-sim.toml").config.records
    assert (default.audit_keep_days, default.events_keep_days) == (90, 30)


@pytest.mark.parametrize(
    ("key", "value", "pattern"),
    [
        ("audit_keep_days", 0, r"records\.audit_keep_days: .*greater than or equal to 1"),
        ("events_keep_days", 0, r"records\.events_keep_days: .*greater than or equal to 1"),
        ("events_keep_days", 1.5, r"records\.events_keep_days: .*integer"),
    ],
)
def test_records_keep_times_are_bounded(key: str, value: object, pattern: str) -> None:
    data = _sim_dict()
    data["records"][key] = value
    _refused(data, pattern)


def test_the_audit_must_outlast_the_request_id_keep_time() -> None:
    data = _sim_dict()
    data["records"]["audit_keep_days"] = 3
    data["mqtt"]["request_id_keep_s"] = 3 * 86_400.0
    config_from_dict(data, CONFIG / "booth-sim.toml")  # exactly covered: fine
    data["mqtt"]["request_id_keep_s"] = 3 * 86_400.0 + 1
    _refused(
        data,
        r"records\.audit_keep_days: 3 days is shorter than mqtt\.request_id_keep_s "
        r"\(259201 s\).*at least 4 days",
    )
