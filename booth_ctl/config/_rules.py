"""The booth config's cross-field rules: each problem names its field and the bound it breaks.

Every rule here closes a way in which an accepted configuration could lift a rule of CONTRACT
s.4 (docs/safety.md, "Review findings: configuration"). They run inside the model's validation,
so whatever builds a ``BoothConfig`` (the daemon, ``config check``, an MQTT client's reading of
the file) gets them all, and all of them are reported at once.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

from booth_ctl.config._alloys import (
    AUTOIGNITION_MARGIN_C,
    FLUX_AUTOIGNITION_BASIS,
    components_problems,
    flux_autoignition_c,
    flux_kind,
    ignition_ceiling_c,
)
from drivers._config import (
    COMM_TIMEOUT_S_MAX,
    COMM_TIMEOUT_S_MIN,
    WATCHDOG_MS_MAX,
    WATCHDOG_MS_MIN,
)

if TYPE_CHECKING:
    from booth_ctl.config._booth import BoothConfig

#: Seconds in a day (the keep times of the records are in days).
DAY_S = 86_400
#: Device and vessel names are plain identifiers: the supervisor keys every output and reading
#: by ``device.point`` and every temperature permissive by ``solder_temp_ok.vessel``, so a dot
#: in a name (``io.main``) makes outputs that are never written while heartbeats go on.
NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,31}$")
#: "Top" is reached at z_travel_mm + z_tolerance_mm; it must stay this much more above every
#: bath and the flux: the holder travels between stations at full speed at the top, and the
#: margin covers the part and its holder hanging below the reference point, a bath's surface
#: lifted by the parts dipped and waves from the last dip. (A wider approach gap needs no more:
#: the fast approach never starts below the top.)
TRAVEL_CLEARANCE_MM = 10.0
#: The fast approach stops at least this many z tolerances above a surface: a fast move counts
#: as arrived within one tolerance, and the second keeps an overshooting stop out of the bath.
APPROACH_GAP_TOLERANCES = 2.0
#: The device kinds the supervisor uses exactly one of (it takes the first of a kind: a second
#: one would be polled and heartbeated, never commanded or read by any rule).
SINGLE_KINDS = ("remote_io", "holder_drive", "o2_analyzer")


def rule_problems(cfg: BoothConfig) -> list[str]:
    """Every cross-field problem of a booth config, one line each."""
    return [
        *_device_problems(cfg),
        *_vessel_problems(cfg),
        *_geometry_problems(cfg),
        *_flux_problems(cfg),
        *_records_problems(cfg),
    ]


def _device_problems(cfg: BoothConfig) -> Iterator[str]:
    for name in cfg.devices:
        if not NAME_PATTERN.match(name):
            yield (
                f"devices.{name}: the name must be a plain identifier (letters, digits, _; 32 at "
                "most; no dot): outputs and readings are keyed by device.point"
            )
    kinds: list[str] = [d.kind for d in cfg.devices.values()]
    for needed in SINGLE_KINDS:
        count = kinds.count(needed)
        if count == 0:
            yield f"devices: no device of kind {needed!r}"
        elif count > 1:
            names = [n for n, d in cfg.devices.items() if d.kind == needed]
            yield (
                f"devices: {count} devices of kind {needed!r} ({', '.join(names)}); the booth "
                "uses exactly one, another would be polled and heartbeated but never commanded"
            )
    # CONTRACT s.4: the devices make themselves safe when the supervisor goes silent. A booth
    # config cannot leave their watchdogs out (the bounds are DeviceConfig's).
    for name, d in cfg.devices.items():
        if d.kind == "remote_io" and d.watchdog_ms is None:
            yield (
                f"devices.{name}.watchdog_ms: required for a remote_io (its communication "
                f"watchdog drops the outputs to safe; {WATCHDOG_MS_MIN}-{WATCHDOG_MS_MAX} ms)"
            )
        # A temp_controller's comm_timeout_s is required by its map (config._layers): most
        # real controllers have no comm-loss timeout, and the I/O watchdog covers those.
        if d.kind == "holder_drive" and d.comm_timeout_s is None:
            yield (
                f"devices.{name}.comm_timeout_s: required for a holder_drive (it withdraws "
                f"the part by itself without the supervisor's heartbeat; "
                f"{COMM_TIMEOUT_S_MIN:g}-{COMM_TIMEOUT_S_MAX:g} s)"
            )


def _vessel_problems(cfg: BoothConfig) -> Iterator[str]:
    stations = {cfg.holder.load_station: "holder.load_station", cfg.flux.station: "flux"}
    used_by: dict[str, str] = {}
    max_c = cfg.limits.temp_max_c
    ceiling_c = ignition_ceiling_c(cfg.flux.agent, cfg.flux.components)
    for name, v in cfg.vessels.items():
        if not NAME_PATTERN.match(name):
            yield (
                f"vessels.{name}: the name must be a plain identifier (letters, digits, _; 32 at "
                "most; no dot): permissives are keyed by solder_temp_ok.vessel"
            )
        dev = cfg.devices.get(v.controller)
        if dev is None or dev.kind != "temp_controller":
            yield f"vessels.{name}.controller: {v.controller!r} is not a temp_controller device"
        elif v.controller in used_by:
            # One controller would be commanded two setpoints and verified against two baths.
            yield (
                f"vessels.{name}.controller: {v.controller!r} already heats "
                f"vessels.{used_by[v.controller]}; each vessel has its own controller"
            )
        else:
            used_by[v.controller] = name
        if v.station in stations:
            yield f"vessels.{name}.station: station {v.station} is already {stations[v.station]}"
        stations[v.station] = f"vessels.{name}"
        top_c = v.idle_setpoint_c + v.idle_band_c
        if top_c >= max_c:
            yield (
                f"vessels.{name}.idle_setpoint_c: plus idle_band_c ({top_c:g} C) must stay "
                f"under limits.temp_max_c ({max_c:g})"
            )
        if top_c >= ceiling_c:
            yield (
                f"vessels.{name}.idle_setpoint_c: plus idle_band_c ({top_c:g} C) must stay "
                f"under {ceiling_c:g} C, {AUTOIGNITION_MARGIN_C:g} C under the autoignition "
                f"point of the booth's {flux_kind(cfg.flux.agent, cfg.flux.components)}"
            )
    for name, dev in cfg.devices.items():
        if dev.kind == "temp_controller" and name not in used_by:
            yield (
                f"devices.{name}: a temp_controller that no vessel names (vessels.*.controller); "
                "it would be heartbeated but never commanded or verified"
            )


def _geometry_problems(cfg: BoothConfig) -> Iterator[str]:
    h = cfg.holder
    gap_min_mm = APPROACH_GAP_TOLERANCES * h.z_tolerance_mm
    if h.approach_gap_mm < gap_min_mm:
        yield (
            f"holder.approach_gap_mm: {h.approach_gap_mm:g} is below {gap_min_mm:g} mm, "
            f"{APPROACH_GAP_TOLERANCES:g} x holder.z_tolerance_mm {h.z_tolerance_mm:g}: a fast "
            "approach could stop in the bath"
        )
    clearance_mm = TRAVEL_CLEARANCE_MM
    top_mm = h.z_travel_mm + h.z_tolerance_mm
    baths = [(f"vessels.{n}", v.surface_z_mm, v.depth_max_mm) for n, v in cfg.vessels.items()]
    baths.append(("flux", cfg.flux.surface_z_mm, cfg.flux.depth_max_mm))
    for field, surface_mm, depth_mm in baths:
        if top_mm + clearance_mm > surface_mm:
            most_mm = surface_mm - clearance_mm - h.z_tolerance_mm
            yield (
                f"holder.z_travel_mm: {h.z_travel_mm:g} + z_tolerance_mm {h.z_tolerance_mm:g} "
                f"is within {clearance_mm:g} mm of {field}.surface_z_mm {surface_mm:g}: the top "
                f"must be out of every bath, at most {most_mm:g}"
            )
        if surface_mm + depth_mm > h.z_max_mm:
            yield (f"{field}: surface_z_mm + depth_max_mm exceeds holder.z_max_mm ({h.z_max_mm:g})")


def _flux_problems(cfg: BoothConfig) -> Iterator[str]:
    flux = cfg.flux
    yield from components_problems("flux.components", flux.agent, flux.components)
    ignition_c = flux_autoignition_c(flux.agent, flux.components)
    ceiling_c = ignition_ceiling_c(flux.agent, flux.components)
    if cfg.limits.temp_max_c >= ceiling_c:
        worst = (
            min(flux.components, key=flux_autoignition_c)
            if flux.agent == "mixture" and flux.components
            else flux.agent
        )
        yield (
            f"limits.temp_max_c: {cfg.limits.temp_max_c:g} must stay under {ceiling_c:g} C: the "
            f"booth's {flux_kind(flux.agent, flux.components)} (flux.agent) autoignites at "
            f"{ignition_c:g} C ({FLUX_AUTOIGNITION_BASIS[worst]}), less a "
            f"{AUTOIGNITION_MARGIN_C:g} C margin"
        )


def _records_problems(cfg: BoothConfig) -> Iterator[str]:
    keep_s = cfg.mqtt.request_id_keep_s
    if cfg.records.audit_keep_days * DAY_S < keep_s:
        need = -(-keep_s // DAY_S)  # whole days, rounded up
        yield (
            f"records.audit_keep_days: {cfg.records.audit_keep_days} days is shorter than "
            f"mqtt.request_id_keep_s ({keep_s:g} s), and a repeated request_id is answered "
            f"from the command audit: at least {need:g} days (or a shorter "
            "mqtt.request_id_keep_s)"
        )
