"""The simulated booth's physical truth as JSON-ready data: what ``booth-sim state`` prints and
what the tests judge the supervisor by. It only reads the physics."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._physics import BoothPhysics


def truth(physics: BoothPhysics) -> dict[str, Any]:
    """Every fact of the booth that a test or an operator may ask the simulator for."""
    first = next(iter(physics.vessels.values()))
    part = physics.part
    io = physics.io
    holder = physics.holder
    vessels = {}
    for dname, ctl in physics.controllers.items():
        vname = physics.vessel_of_controller.get(dname)
        if vname is None:
            continue
        v = physics.vessels[vname]
        vessels[vname] = {
            "temp_c": round(v.temp_c, 3),
            "liquid_fraction": round(v.liquid_fraction, 4),
            "heater_on": v.heater_power_w > 0,
            "heater_power_w": round(v.heater_power_w, 1),
            "controller": dname,
            "controller_pv_c": round(v.tc_c, 3),
            "high_limit_sensor_c": round(v.high_limit_sensor_c, 3),
            "setpoint_c": float(ctl.bank.get("sv_c")),
            "output_pct": round(ctl.output_pct, 2),
            "running": ctl.running,
            "comm_lost": ctl.comm_lost,
            "tc_open": physics.faults.on_vessel("tc_open", vname),
        }
    return {
        "ts": physics.epoch_s + physics.t_s,
        "sim_time_s": physics.t_s,
        "solder_temp_c": round(first.temp_c, 3),
        "heater_on": any(v.heater_power_w > 0 for v in physics.vessels.values()),
        "heater_contactor_closed": physics.contactor_closed,
        "high_limit_tripped": physics.high_limit_tripped,
        "vessels": vessels,
        "o2_ppm": round(physics.atmosphere.o2_ppm, 2),
        "o2_analyzer_ppm": round(physics.analyzer.reported_ppm, 2),
        "o2_analyzer_status": physics.analyzer.status,
        "n2_purge_on": io.coil("n2_purge") and "n2_supply_loss" not in physics.faults,
        "n2_maintain_on": io.coil("n2_maintain") and "n2_supply_loss" not in physics.faults,
        "n2_flow_lpm": round(physics.n2_flow_lpm, 2),
        "door_closed": "door_open" not in physics.faults,
        "estop_ok": "estop" not in physics.faults,
        "exhaust_ok": io.coil("exhaust_fan") and "exhaust_fail" not in physics.faults,
        "n2_supply_ok": "n2_supply_loss" not in physics.faults,
        "holder_station": holder.over_station,
        "holder_z_mm": round(holder.z_mm, 3),
        "holder_moving": bool(holder.bank.get("moving")),
        "holder_stall": holder.stall,
        "holder_comm_lost": holder.comm_lost,
        "vacuum_kpa": round(physics.vacuum_kpa, 2),
        "part_held": part.present,
        "hook_engaged": part.present and physics.config.holder.kind in ("chain", "both"),
        "part_in_flux": part.in_flux,
        "part_in_bath": part.in_vessel is not None,
        "part_vessel": part.in_vessel,
        "parts_loaded": part.loaded,
        "parts_unloaded": part.unloaded,
        "parts_put_back": part.put_back,
        "parts_dropped": len(part.drops),
        "parts_dropped_in_bath": sum(d.into.startswith("vessel:") for d in part.drops),
        "drops": [asdict(d) for d in part.drops],
        "flux_level_pct": round(physics.handling.flux_level_pct, 3),
        "flux_dips": physics.handling.flux_dips,
        "flux_lid_closed": physics.handling.flux_lid_closed,
        "io_watchdog_tripped": io.tripped,
        "faults": physics.faults.names(),
        "fault_values": physics.faults.values(),
        "bath_entries": [asdict(e) for e in physics.bath_entries],
    }
