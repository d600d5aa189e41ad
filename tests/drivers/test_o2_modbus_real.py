"""A real Modbus O2 analyzer: the Endress+Hauser OXY5500 map (config/maps/endress-oxy5500.toml)
against the analyzer's personality, written from its manual (BA02195C), not from the map.

Served over Modbus TCP like the other vendor maps (the RTU line is the simulated booth's test at
the end): every point, the float's word order (the manual's own example), the fault status and
implausible values BAD, the analyzer's exception codes, garbage and silence named as such.
"""

from __future__ import annotations

import logging
import math
import tomllib
from pathlib import Path
from typing import Any

import pytest

from booth_ctl.config._booth import check_config
from drivers import DeviceSet, ModbusDevice, Quality, RegisterMap, load_register_map, open_device
from drivers._codec import decode, words_to_raw
from sim_hw import SimBooth
from sim_hw.personalities import EndressOXY5500, Refusal
from sim_hw.personalities.endress_oxy5500 import MEASUREMENT_CONTROL, OXYGEN
from tests._util import CONFIG_DIR, render_config, wait_for

from ._fakes import Bank, HostileTcpServer, load_devices
from .test_modbus import tcp_config
from .test_vendor_maps import MAPS, served

pytestmark = pytest.mark.timeout(30)

MAP_NAME = "endress-oxy5500"
#: BA02195C "Data formats": 20.56 is 0x41A47AE1, sent as 0x7AE1 (first register), 0x41A4.
MANUAL_EXAMPLE = (20.56, [0x7AE1, 0x41A4])


def _map(**changes: Any) -> RegisterMap:
    """The shipped map, with map-wide keys or ppm's keys changed (a wrong map, on purpose)."""
    data = tomllib.loads((MAPS / f"{MAP_NAME}.toml").read_text(encoding="utf-8"))
    ppm = changes.pop("ppm", {})
    data["points"]["ppm"].update(ppm)
    data.update(changes)
    return RegisterMap.model_validate(data)


async def test_every_point_reads_as_the_analyzer_shows_it() -> None:
    oxy = EndressOXY5500("o2")
    oxy.o2_ppm = 12.5
    async with served(oxy, "o2_analyzer", MAP_NAME) as dev:
        r = await dev.poll()
        assert r["ppm"].value == pytest.approx(12.5)
        assert r["status_ok"].value is True and r["measurement_stopped"].value is False
        assert r["measuring"].value is False
        assert all(x.quality is Quality.GOOD for x in r.values()), r
        oxy.measure(187.25)
        oxy.measuring = True
        r = await dev.poll()
        assert r["ppm"].value == pytest.approx(187.25) and r["measuring"].value is True
        # Two reads, each from a value's first register, by FC03 only.
        assert set(oxy.requests) == {3}


def test_the_manuals_float_example_is_low_word_first() -> None:
    value, words = MANUAL_EXAMPLE
    oxy = EndressOXY5500("o2")
    oxy.o2_ppm = value
    assert oxy.read(3, OXYGEN, 2) == words
    assert oxy.read(4, OXYGEN, 2) == words  # FC04 reads the same registers
    ppm = load_register_map(MAPS / f"{MAP_NAME}.toml").points["ppm"]
    assert decode(ppm, words_to_raw(ppm, words)) == pytest.approx(value, rel=1e-6)
    swapped = _map(word_order="high_low").points["ppm"]
    assert decode(swapped, words_to_raw(swapped, words)) != pytest.approx(value, rel=1e-3)


@pytest.mark.parametrize("o2_ppm", [MANUAL_EXAMPLE[0], 3.7, 950.0])
async def test_a_map_with_the_words_swapped_never_reads_the_value(o2_ppm: float) -> None:
    oxy = EndressOXY5500("o2")
    oxy.o2_ppm = o2_ppm
    async with served(oxy, "o2_analyzer", MAP_NAME) as dev:
        assert (await dev.poll())["ppm"].value == pytest.approx(o2_ppm, rel=1e-6)
    async with served(oxy, "o2_analyzer", MAP_NAME, regmap=_map(word_order="high_low")) as dev:
        r = (await dev.poll())["ppm"]
        assert r.value is None or r.value != pytest.approx(o2_ppm, rel=1e-3), r
    # The swapped words of a booth's value are a denormal or an absurd float: BAD, not a value.
    if o2_ppm == MANUAL_EXAMPLE[0]:
        assert r.quality is Quality.BAD


@pytest.mark.parametrize("address", [4908, 4910])
async def test_a_map_off_by_one_register_is_refused(address: int) -> None:
    oxy = EndressOXY5500("o2")
    oxy.o2_ppm = 50.0
    async with served(oxy, "o2_analyzer", MAP_NAME, regmap=_map(ppm={"address": address})) as dev:
        r = await dev.poll()
        assert r["ppm"].quality is Quality.BAD and r["ppm"].value is None
        assert dev.health.fault == "ModbusExceptionReply"


async def test_the_fault_status_and_a_sensor_fault_make_the_value_bad() -> None:
    oxy = EndressOXY5500("o2")
    oxy.o2_ppm = 40.0
    async with served(oxy, "o2_analyzer", MAP_NAME) as dev:
        assert (await dev.poll())["ppm"].good
        # Interval measurement off: the analyzer stops measuring and keeps its last value.
        oxy.interval_on = False
        oxy.measure(5000.0)
        r = await dev.poll()
        assert r["status_ok"].value is False and r["measurement_stopped"].value is True
        assert r["ppm"].quality is Quality.BAD and r["ppm"].value is None
        assert dev.why["ppm"] == "measurement_stopped"
        oxy.interval_on = True
        oxy.measure(41.0)
        # The value (4909) is read before the status (5707): it is judged by the status of the
        # poll before, so it turns GOOD one poll late, and BAD in the very poll that shows the
        # fault (the status read invalidates it).
        await dev.poll()
        assert (await dev.poll())["ppm"].value == pytest.approx(41.0)
        # A sensor fault: no number where the value should be.
        oxy.sensor_error = True
        r = await dev.poll()
        assert r["ppm"].quality is Quality.BAD and "not a number" in dev.why["ppm"]
        assert r["status_ok"].value is True  # the status alone would not have caught it
        oxy.sensor_error = False
        assert (await dev.poll())["ppm"].good


@pytest.mark.parametrize("o2_ppm", [300_000.0, -2.0, math.inf, 3.0e38])
async def test_an_implausible_value_is_bad(o2_ppm: float) -> None:
    oxy = EndressOXY5500("o2")
    oxy.o2_ppm = o2_ppm
    async with served(oxy, "o2_analyzer", MAP_NAME) as dev:
        r = (await dev.poll())["ppm"]
        assert r.quality is Quality.BAD and r.value is None
        assert dev.why["ppm"]
        oxy.o2_ppm = 209_000.0  # air (a door open): a value, and a high one
        assert (await dev.poll())["ppm"].value == pytest.approx(209_000.0)


def test_the_analyzer_answers_its_exception_codes() -> None:
    oxy = EndressOXY5500("o2")
    cases: list[tuple[Any, int]] = [
        (lambda: oxy.read(3, 4000, 2), 0x02),  # no such register
        (lambda: oxy.read(3, OXYGEN + 1, 2), 0x02),  # inside a value
        (lambda: oxy.read(3, OXYGEN, 1), 0x02),  # half a value
        (lambda: oxy.read(1, 0, 8), 0x01),  # coils: not a function it has
        (lambda: oxy.write(6, MEASUREMENT_CONTROL, [1]), 0x01),  # writes are FC16 only
        (lambda: oxy.write(16, OXYGEN, [0, 0]), 0x02),  # read only
        (lambda: oxy.write(16, 3499, [0, 0]), 0x03),  # interval 0 s: out of range
    ]
    for call, code in cases:
        with pytest.raises(Refusal) as info:
            call()
        assert info.value.code == code, info.value
    oxy.write(16, MEASUREMENT_CONTROL, [0, 0])  # interval off, low word first
    assert not oxy.interval_on
    oxy.usb_active = True
    with pytest.raises(Refusal) as info:
        oxy.write(16, MEASUREMENT_CONTROL, [1, 0])
    assert info.value.code == 0x06 and not oxy.interval_on


@pytest.mark.parametrize(
    ("mode", "quality", "fault"),
    [
        ("garbage", Quality.BAD, "ProtocolError"),
        ("truncated", Quality.BAD, "ProtocolError"),
        ("silent", Quality.NO_COMM, "DeviceTimeout"),
    ],
)
async def test_garbage_or_no_answer_is_named_never_a_value(
    mode: str, quality: Quality, fault: str, caplog: pytest.LogCaptureFixture
) -> None:
    oxy = EndressOXY5500("o2")
    oxy.o2_ppm = 25.0
    bank = Bank()
    holding = [0] * (MEASUREMENT_CONTROL + 2)
    holding[OXYGEN : OXYGEN + 2] = oxy.read(3, OXYGEN, 2)
    holding[MEASUREMENT_CONTROL : MEASUREMENT_CONTROL + 2] = oxy.read(3, MEASUREMENT_CONTROL, 2)
    bank.tables["holding"] = holding
    regmap = load_register_map(MAPS / f"{MAP_NAME}.toml")
    async with HostileTcpServer({1: bank}) as server:
        cfg = tcp_config(server.port, kind="o2_analyzer", retries=1)
        async with open_device("o2", cfg, regmap) as dev:
            assert (await dev.poll())["ppm"].value == pytest.approx(25.0)
            bank.mode = mode
            with caplog.at_level(logging.ERROR, logger="drivers"):
                r = await dev.poll()
            assert r["ppm"].quality is quality and r["status_ok"].quality is quality
            assert not r["ppm"].good
            assert dev.health.fault == fault
            errors = [rec.getMessage() for rec in caplog.records if rec.levelno >= logging.ERROR]
            assert any(m.startswith(f"o2 at address {OXYGEN}") for m in errors), errors


def test_the_example_booth_with_the_oxy5500_on_the_controllers_line_passes_the_check(
    tmp_path: Path,
) -> None:
    """The commented example in booth.example.toml, switched on, keeps the line's limits."""
    text = (CONFIG_DIR / "booth.example.toml").read_text(encoding="utf-8")
    start = text.index('# map = "maps/endress-oxy5500.toml"')
    lines = text[start:].splitlines()
    ends = [i for i, x in enumerate(lines) if not x.startswith("# ")]
    block = "\n".join(lines[: ends[0] if ends else len(lines)])
    serial = 'transport = { type = "serial", port = "/dev/ttyUSB1", baudrate = 9600 }\n'
    assert serial in text
    enabled = "\n".join(line.removeprefix("# ") for line in block.splitlines())
    path = tmp_path / "booth.toml"
    path.write_text(text.replace(serial, "").replace(block, enabled), encoding="utf-8")
    (tmp_path / "maps").symlink_to(CONFIG_DIR / "maps")
    loaded, problems = check_config(path)
    assert problems == [] and loaded is not None
    assert loaded.maps["o2"].name == MAP_NAME
    # Without its status the map would not do: the supervisor's check names the point.
    broken = tmp_path / "maps-broken"
    broken.mkdir()
    data = (CONFIG_DIR / "maps" / f"{MAP_NAME}.toml").read_text(encoding="utf-8")
    (broken / "oxy.toml").write_text(data.replace("[bits.status_ok]", "[bits.other]"), "utf-8")
    path.write_text(
        path.read_text(encoding="utf-8").replace(
            'map = "maps/endress-oxy5500.toml"', 'map = "maps-broken/oxy.toml"'
        ),
        encoding="utf-8",
    )
    _, problems = check_config(path)
    assert any("'status_ok'" in p and "devices.o2.map" in p for p in problems), problems


def _oxy5500_on_the_heater_line(data: dict[str, Any]) -> None:
    line = data["devices"]["heater1"]["transport"]
    data["devices"]["o2"] = {
        "kind": "o2_analyzer",
        "map": str(CONFIG_DIR / "maps" / f"{MAP_NAME}.toml"),
        "transport": {**line, "unit": 5},
        "poll_hz": 5.0,
        "stale_s": 1.0,
        "timeout_s": 0.08,
        "retries": 1,
    }
    data["sim"].setdefault("personalities", {})["o2"] = MAP_NAME


@pytest.mark.hil
async def test_the_simulated_booth_serves_its_o2_through_the_oxy5500(tmp_path: Path) -> None:
    path = render_config(tmp_path, overrides=_oxy5500_on_the_heater_line)
    devices, maps = load_devices(path)
    async with SimBooth(path, control_socket=False) as sim, DeviceSet(devices, maps) as dset:
        o2 = dset.devices["o2"]
        assert isinstance(o2, ModbusDevice)
        assert isinstance(sim.bridges["o2"].device, EndressOXY5500)

        async def ppm_good() -> Any:
            r = await o2.poll()
            return r if r["ppm"].good and r["status_ok"].value is True else None

        r = await wait_for(ppm_good, timeout_s=10.0, what="o2.ppm GOOD through the OXY5500")
        assert r["ppm"].value == pytest.approx(sim.state()["o2_analyzer_ppm"], abs=20.0)
        assert sim.bridges["o2"].device.requests[3] > 0  # the personality answered, by FC03
        sim.inject("o2_analyzer_silent")

        async def o2_lost() -> bool:
            return (await o2.poll())["ppm"].quality is Quality.NO_COMM

        await wait_for(o2_lost, timeout_s=5.0, what="o2 NO_COMM when the analyzer is silent")
