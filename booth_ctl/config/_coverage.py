"""Which layer covers which device, as ``boothctl config check`` prints it (CONTRACT s.4).

When the supervisor falls silent (hung, killed, cable cut) each device must end safe by its own
means or by another device's: a heater controller by its own comm-loss timeout, or, when it has
none (most real ones), by the heater contactor that the I/O module's watchdog drops; the I/O
module by its watchdog; the holder drive by its comm-loss timeout; the O2 analyzer's readings
by going stale. ``config._layers`` refuses a config where a layer is missing; this says, per
device, which one it relies on, so an engineer can read it off before wiring.
"""

from __future__ import annotations

from booth_ctl.config._booth import LoadedConfig
from booth_ctl.config._layers import has_comm_loss
from drivers import DeviceConfig, RegisterMap

HEADER = "layers (what takes each device safe when the supervisor falls silent):"
#: The I/O module's outputs whose fall-back the booth depends on (``safe_output_problems``).
KEY_OUTPUTS = ("heater_contactor", "n2_maintain", "exhaust_fan", "vacuum_pump", "vacuum_valve")


def _fmt_s(seconds: float) -> str:
    return f"{seconds:g} s"


def _contactor_cover(loaded: LoadedConfig) -> list[str]:
    """'heater_contactor on <io> (watchdog <ms> ms)' for each I/O module whose watchdog opens it."""
    found = []
    for name, d in loaded.config.devices.items():
        regmap = loaded.maps.get(name)
        if d.kind != "remote_io" or regmap is None:
            continue
        p = regmap.points.get("heater_contactor")
        if p is not None and p.safe_value is False:
            wd = f"its watchdog {d.watchdog_ms} ms" if d.watchdog_ms else "its watchdog"
            found.append(f"heater_contactor on {name}, opened by {wd}")
    return found


def _heater(loaded: LoadedConfig, d: DeviceConfig, regmap: RegisterMap) -> str:
    cover = _contactor_cover(loaded)
    if not has_comm_loss(d, regmap):
        return "own comm-loss timeout: none -> covered by " + (" and ".join(cover) or "NOTHING")
    own = _fmt_s(d.comm_timeout_s) if d.comm_timeout_s is not None else "yes"
    text = f"own comm-loss timeout: yes, {own} (stops its output)"
    return text + ("; also " + " and ".join(cover) if cover else "")


def _io(d: DeviceConfig, regmap: RegisterMap) -> str:
    wd = f"watchdog {d.watchdog_ms} ms" if d.watchdog_ms is not None else "watchdog: none"
    fallback = regmap.watchdog.fallback if regmap.watchdog is not None else None
    how = {
        "zero": "every output to 0",
        "safe_values": "outputs to their substitute values",
    }.get(fallback or "", "outputs to their safe values")
    safe = []
    for name in KEY_OUTPUTS:
        p = regmap.points.get(name)
        if p is not None and p.safe_value is not None:
            value = p.safe_value if p.safe_value == "hold" else ("on" if p.safe_value else "off")
            safe.append(f"{name} {value}")
    return f"{wd} -> {how}" + (f" ({', '.join(safe)})" if safe else "")


def _holder(d: DeviceConfig, regmap: RegisterMap | None) -> str:
    parts = []
    if d.comm_timeout_s is not None:
        parts.append(f"own comm-loss timeout {_fmt_s(d.comm_timeout_s)} (withdraws to the top)")
    if regmap is not None and regmap.watchdog is not None and not parts:
        parts.append("its own watchdog")
    return "; ".join(parts) or "NOTHING"


def _o2(d: DeviceConfig) -> str:
    return (
        f"stale after {_fmt_s(d.stale_s)} -> O2 not good: no solder dip, a part in the solder "
        "is withdrawn"
    )


def coverage(loaded: LoadedConfig) -> list[tuple[str, str, str]]:
    """(device, kind and model, what covers it) for every device of the booth."""
    rows = []
    for name, d in loaded.config.devices.items():
        regmap = loaded.maps.get(name)
        model = f"{d.kind}, {regmap.name}" if regmap is not None else d.kind
        if d.kind == "temp_controller" and regmap is not None:
            what = _heater(loaded, d, regmap)
        elif d.kind == "remote_io" and regmap is not None:
            what = _io(d, regmap)
        elif d.kind == "holder_drive":
            what = _holder(d, regmap)
        elif d.kind == "o2_analyzer":
            what = _o2(d)
        else:
            what = "NOTHING"
        rows.append((name, model, what))
    return rows


def coverage_lines(loaded: LoadedConfig) -> list[str]:
    """The table under the ``valid`` line of ``boothctl config check``."""
    rows = [("device", "kind, map", "covered by"), *coverage(loaded)]
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    return [HEADER] + [f"  {a:<{w0}}  {b:<{w1}}  {c}" for a, b, c in rows]
