"""Each shipped vendor map against its device personality (written from the manual, not the map).

Served over Modbus TCP by the simulator's server (the RTU framing is the line's business and is
tested with the generic devices); what is checked here is the map: every point read, every
write's raw registers as the device received them, sentinels and error codes giving BAD, and
the watchdog configured, fed, tripped and cleared.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from drivers import DeviceConfig, ModbusDevice, Quality, load_register_map
from drivers._modbus import ModbusLine
from drivers._writes import DeviceTripped
from sim_hw._modbus import ModbusTcpServer
from sim_hw.personalities import (
    AutonicsTK4,
    OmronE5CC,
    Personality,
    Wago750352,
    WatlowPM,
    personality_responder,
)
from tests._util import CONFIG_DIR, free_port

MAPS = CONFIG_DIR / "maps"


@asynccontextmanager
async def served(
    dev: Personality, kind: str, map_name: str, *, regmap: Any = None, **cfg: object
) -> AsyncIterator[ModbusDevice]:
    """The driver of `dev` over Modbus TCP, on the shipped map `map_name` (or on `regmap`)."""
    port = free_port()
    config = DeviceConfig.model_validate(
        {
            "kind": kind,
            "map": f"maps/{map_name}.toml",
            "transport": {"type": "tcp", "host": "127.0.0.1", "port": port, "unit": 1},
            "timeout_s": 1.0,
            **cfg,
        }
    )
    if regmap is None:
        regmap = load_register_map(Path(MAPS / f"{map_name}.toml"))
    responder = personality_responder({1: dev}, tcp=True)
    async with ModbusTcpServer("127.0.0.1", port, responder):
        line = ModbusLine(config.transport)  # type: ignore[arg-type]
        async with ModbusDevice(dev.device, config, regmap, line, owns_line=True) as driver:
            yield driver


# ------------------------------------------------------------------ Omron E5CC


async def test_e5cc_every_point_reads_as_the_controller_shows_it() -> None:
    e5cc = OmronE5CC("heater1")
    e5cc.pv_c, e5cc.sp_c, e5cc.mv_pct = 251.3, 250.0, 42.5
    async with served(e5cc, "temp_controller", "omron-e5cc") as dev:
        r = await dev.poll()
        # Set-up at connect: communications writing on (operation command 00 01, FC06 at 0).
        assert (6, 0x0000, [0x0001]) in e5cc.writes and e5cc.comm_writing
        assert r["pv_c"].value == pytest.approx(251.3)
        assert r["internal_sp_c"].value == pytest.approx(250.0)
        assert r["output_pct"].value == pytest.approx(42.5)
        assert r["running"].value is True and r["tc_open"].value is False
        assert r["comm_writing_on"].value is True and r["heating_output"].value is True
        assert all(x.quality is Quality.GOOD for x in r.values()), r
        # The E5CC answers only FC03 reads: a map that read input registers would fail here.
        assert set(e5cc.requests) <= {3, 6, 16}


async def test_e5cc_writes_reach_the_registers_the_manual_names() -> None:
    e5cc = OmronE5CC("heater1")
    async with served(e5cc, "temp_controller", "omron-e5cc") as dev:
        await dev.poll()
        await dev.write("sv_c", 260.5)
        # FC16 of the double word at 0x0106, high word first.
        assert e5cc.writes[-1] == (16, 0x0106, [0x0000, 2605])
        assert e5cc.sp_c == pytest.approx(260.5)
        await dev.write("sv_c", -12.5)
        assert e5cc.writes[-1] == (16, 0x0106, [0xFFFF, (-125) & 0xFFFF])
        await dev.write("run", False)  # RUN/STOP command, stop; read back in the status word
        assert (6, 0x0000, [0x0101]) in e5cc.writes and e5cc.stopped
        assert (await dev.poll())["running"].value is False
        await dev.write("run", True)
        assert (6, 0x0000, [0x0100]) in e5cc.writes and not e5cc.stopped


async def test_e5cc_input_error_and_implausible_pv_are_bad_never_a_value() -> None:
    e5cc = OmronE5CC("heater1")
    e5cc.pv_c = 250.0
    async with served(e5cc, "temp_controller", "omron-e5cc") as dev:
        assert (await dev.poll())["pv_c"].good
        e5cc.input_error = True
        r = await dev.poll()
        assert r["tc_open"].value is True
        assert r["pv_c"].quality is Quality.BAD and r["pv_c"].value is None
        e5cc.input_error = False
        e5cc.pv_c = -3276.8  # beyond input type 6: a broken reading, not a cold pot
        r = await dev.poll()
        assert r["pv_c"].quality is Quality.BAD and r["tc_open"].value is False
        e5cc.pv_c = 250.0
        assert (await dev.poll())["pv_c"].good


# ------------------------------------------------------------------ WAGO 750-352


class Clock:
    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


async def test_wago_inputs_and_analog_channels_read_through_the_process_image() -> None:
    wago = Wago750352("io", clock=Clock())
    wago.di = [True, True, False, True, True, False, True, False]
    wago.ai_ma = [12.0, 20.0, 4.0, 4.0]
    async with served(wago, "remote_io", "wago-750-352", watchdog_ms=500) as dev:
        r = await dev.poll()
        assert [r[n].value for n in ("door_closed", "estop_ok", "exhaust_ok", "n2_supply_ok",
                                     "high_limit_ok", "hook_engaged", "flux_lid_closed")] == [
            True, True, False, True, True, False, True,
        ]  # fmt: skip
        assert r["vacuum_kpa"].value == pytest.approx(50.0, abs=0.05)
        assert r["n2_flow_lpm"].value == pytest.approx(200.0, abs=0.1)
        assert r["flux_level_pct"].value == pytest.approx(0.0, abs=0.05)
        assert r["watchdog_tripped"].value is False and r["layers_ok"].value is True
        # Set-up: 500 ms written as 5 x 100 ms to WS_TIME (0x1000).
        assert (6, 0x1000, [5]) in wago.writes and wago.wd_time == 5
        wago.ai_ma[0] = 0.0  # wire break: 0x7FFF, not "part held"
        r = await dev.poll()
        assert r["vacuum_kpa"].quality is Quality.BAD and r["vacuum_kpa"].value is None


async def test_wago_outputs_written_at_0_read_back_at_0x200_with_the_wiring_inverted() -> None:
    wago = Wago750352("io", clock=Clock())
    async with served(wago, "remote_io", "wago-750-352", watchdog_ms=500) as dev:
        await dev.poll()
        await dev.write("heater_contactor", True)
        assert wago.writes[-1] == (5, 0x0000, [1]) and wago.do[0]
        await dev.write("vacuum_valve", True)  # inverted: raw 0 keeps suction
        assert wago.writes[-1] == (5, 0x0005, [0]) and not wago.do[5]
        await dev.write("buzzer", True)
        assert wago.writes[-1] == (5, 0x0009, [1]) and wago.do[9]
        assert wago.requests[1] == 3  # each write read back with FC1 (at 0x0200..)


async def test_wago_watchdog_fed_by_a_changing_nonzero_value_trips_and_clears() -> None:
    clock = Clock()
    wago = Wago750352("io", clock=clock)
    async with served(wago, "remote_io", "wago-750-352", watchdog_ms=500) as dev:
        await dev.poll()
        await dev.write("heater_contactor", True)
        for counter in (0, 1, 0xFFFF):  # the supervisor's counter; 0 must never reach 0x1003
            await dev.write("watchdog_refresh", counter)
            assert wago.writes[-1][2][0] != 0
            clock.now_s += 0.3
            assert not wago.tripped
        clock.now_s += 0.6  # no feed for longer than 500 ms
        assert wago.tripped and not wago.do[0]
        with pytest.raises(DeviceTripped, match="watchdog tripped"):
            await dev.write("heater_contactor", True)
        assert (await dev.poll())["watchdog_tripped"].value is True
        await dev.write("watchdog_clear", 1)
        assert (6, 0x1007, [1]) in wago.writes and not wago.tripped
        assert (await dev.poll())["watchdog_tripped"].value is False


async def test_wago_watchdog_setting_changed_behind_the_booth_is_seen() -> None:
    wago = Wago750352("io", clock=Clock())
    async with served(wago, "remote_io", "wago-750-352", watchdog_ms=500) as dev:
        assert (await dev.poll())["layers_ok"].value is True
        wago.wd_time = 0  # someone switched the watchdog off with a tool
        found = await dev.check_layers()
        assert found == [("watchdog_timeout_ms", 500.0, 0.0)]
        assert (await dev.poll())["layers_ok"].value is False


# ------------------------------------------------------------------ Watlow EZ-ZONE PM


async def test_watlow_pm_floats_low_word_first_in_celsius_after_setup() -> None:
    pm = WatlowPM("heater1")
    pm.pv_c, pm.sp_c, pm.power_pct = 245.5, 250.0, 37.5
    async with served(pm, "temp_controller", "watlow-pm") as dev:
        r = await dev.poll()
        assert (6, 2490, [15]) in pm.writes and pm.units == 15  # C over Modbus
        assert r["pv_c"].value == pytest.approx(245.5, abs=1e-3)
        assert r["sv_c"].value == pytest.approx(250.0, abs=1e-3)
        assert r["output_pct"].value == pytest.approx(37.5, abs=1e-3)
        assert r["running"].value is True and r["tc_open"].value is False
        assert all(x.quality is Quality.GOOD for x in r.values()), r
        await dev.write("sv_c", 260.25)
        # 260.25f = 0x43822000: low word first at 2160
        assert pm.writes[-1] == (16, 2160, [0x2000, 0x4382])
        assert pm.sp_c == pytest.approx(260.25)
        await dev.write("run", False)
        assert pm.writes[-1] == (6, 1880, [62]) and pm.mode == 62
        assert (await dev.poll())["running"].value is False


async def test_watlow_pm_input_error_code_makes_the_pv_bad() -> None:
    pm = WatlowPM("heater1")
    pm.pv_c = 250.0
    async with served(pm, "temp_controller", "watlow-pm") as dev:
        assert (await dev.poll())["pv_c"].good
        pm.input_error = 65  # open
        r = await dev.poll()
        assert r["tc_open"].value is True and r["pv_c"].quality is Quality.BAD


# ------------------------------------------------------------------ Autonics TK4


async def test_autonics_tk4_decimal_point_read_at_connect_and_sentinels() -> None:
    tk = AutonicsTK4("heater1", decimal_point=1)
    tk.pv_c, tk.sv_c, tk.mv_pct = 249.7, 250.0, 55.0
    async with served(tk, "temp_controller", "autonics-tk4") as dev:
        r = await dev.poll()
        assert r["pv_c"].value == pytest.approx(249.7)
        assert r["sv_c"].value == pytest.approx(250.0)
        assert r["output_pct"].value == pytest.approx(55.0)
        assert r["running"].value is True and r["tc_open"].value is False
        assert all(x.quality is Quality.GOOD for x in r.values()), r
        # The manual's 3xxxx / 4xxxx references, minus their base, on the wire.
        await dev.write("sv_c", 255.5)
        assert tk.writes[-1] == (6, 0, [2555])
        await dev.write("run", False)
        assert tk.writes[-1] == (6, 50, [1]) and tk.stopped
        tk.sensor_open = True  # the PV register holds 31000: no value, and tc_open
        r = await dev.poll()
        assert r["tc_open"].value is True
        assert r["pv_c"].quality is Quality.BAD and dev.raw_of("pv_c") == 31000


async def test_autonics_tk4_without_decimals_reads_whole_degrees() -> None:
    tk = AutonicsTK4("heater1", decimal_point=0)
    tk.pv_c = 250.0
    async with served(tk, "temp_controller", "autonics-tk4") as dev:
        assert (await dev.poll())["pv_c"].value == pytest.approx(250.0)
        await dev.write("sv_c", 251.0)
        assert tk.writes[-1] == (6, 0, [251])


# ------------------------------------------------------------------ block writes


async def test_a_direct_data_block_goes_in_one_fc16_and_is_read_back() -> None:
    from drivers import RegisterMap
    from sim_hw._banks import RegisterBank
    from sim_hw.personalities._bridge import BankPersonality

    regmap = RegisterMap.model_validate(
        {
            "name": "drive-dd",
            "address_base": 40001,
            "points": {
                "z_target_mm": {"table": "holding", "address": 40010, "type": "int32",
                                "scale": 0.01, "writable": True, "unit": "mm"},
                "z_speed_mm_s": {"table": "holding", "address": 40012, "scale": 0.1,
                                 "writable": True, "unit": "mm/s"},
            },
            "blocks": {"move": {"points": ["z_target_mm", "z_speed_mm_s"]}},
        }
    )  # fmt: skip
    drive = BankPersonality("drive", RegisterBank("drive", regmap_for_bank(regmap)))
    async with served(drive, "holder_drive", "x", regmap=regmap) as dev:
        await dev.write_block("move", {"z_target_mm": 123.45, "z_speed_mm_s": 80.0})
    assert drive.requests[16] == 1 and drive.requests[6] == 0
    assert drive.bank.read("holding", 9, 3) == [0, 12345, 800]


def regmap_for_bank(regmap: Any) -> Any:
    """The generic banks hold one register per point: the same addresses, 16-bit each."""
    from drivers import RegisterMap

    points = {}
    for name, p in regmap.points.items():
        for i in range(p.width):
            points[f"{name}_{i}"] = {
                "table": p.table,
                "address": p.wire_address + i,
                "writable": True,
            }
    return RegisterMap.model_validate({"name": "bank", "points": points})


# ------------------------------------------------------------------ set-up a model locks


def _e5cc_with_setup(optional: bool) -> Any:
    import tomllib

    from drivers import RegisterMap

    data = tomllib.loads((MAPS / "omron-e5cc.toml").read_text())
    # A protect-level register this model does not have (exception 02 from the E5CC).
    data["points"]["protect_level"] = {
        "table": "holding",
        "address": 0x0500,
        "type": "int32",
        "writable": True,
        "poll": False,
    }
    data["setup"].append({"point": "protect_level", "value": 1, "optional": optional})
    return RegisterMap.model_validate(data)


@pytest.mark.parametrize("optional", [True, False])
async def test_an_optional_setup_step_a_model_refuses_is_tolerated(optional: bool) -> None:
    e5cc = OmronE5CC("heater1")
    e5cc.pv_c = 250.0
    regmap = _e5cc_with_setup(optional)
    async with served(e5cc, "temp_controller", "x", regmap=regmap) as dev:
        r = await dev.poll()
    assert (16, 0x0500, [0, 1]) in e5cc.writes  # it was tried
    if optional:
        assert r["pv_c"].good and e5cc.comm_writing
    else:
        assert r["pv_c"].quality is Quality.BAD  # the device refuses its set-up: not usable
