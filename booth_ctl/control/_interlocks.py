"""Permissives: what must be true, now, for each kind of step, from one snapshot.

Each permissive is true only on GOOD, fresh readings that show the safe value; a missing, stale,
bad or NO_COMM input counts as the unsafe value. The O2 permissive also needs history (stable
time, a moving reading, the N2 delivered since the door last closed), kept by ``O2Monitor``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from booth_ctl.config._booth import O2_ABSOLUTE_MAX_PPM, BoothConfig
from booth_ctl.control._image import Names, Snapshot, fresh_value, is_false, is_true

#: Flow integration ignores gaps longer than this (a stalled scan must not credit a purge).
PURGE_MAX_DT_S = 1.0
#: "Stable" needs this many distinct analyzer samples (told apart by their own timestamps) in
#: the stable time, besides the time itself: one reading held fresh is one sample, not
#: stability (CONTRACT s.4, "a fresh reading stable for the configured time").
O2_STABLE_SAMPLES = 3

#: Permissives a solder dip needs at entry (per vessel temperature is added by the caller).
BASE = ("door_closed", "estop_clear", "exhaust_ok", "n2_supply_ok", "io_ok", "holder_ok")
#: ``flux_lid_open``: a holder lowered onto a closed lid would strike it and tip the part.
FLUX_ENTRY = (*BASE, "part_held", "flux_level_ok", "heaters_ok", "flux_lid_open")
SOLDER_ENTRY = (*BASE, "part_held", "flux_done", "heaters_ok", "o2_ok")
#: Lost while a part is immersed, any of these withdraws it at once (CONTRACT s.4).
FLUX_STAY = ("door_closed", "estop_clear", "part_held", "holder_ok")
SOLDER_STAY = ("door_closed", "estop_clear", "part_held", "holder_ok", "o2_ok")


@dataclass(frozen=True, slots=True)
class O2State:
    ok: bool
    ppm: float | None
    frozen: bool
    purged_l: float
    #: Why it is not ok, for the status and alarms ("" when ok).
    why: str


class O2Monitor:
    """Tracks the history the O2 permissive needs; ``update`` once per scan."""

    def __init__(self, cfg: BoothConfig, names: Names) -> None:
        self._ppm_name = f"{names.o2}.ppm"
        self._status_name = f"{names.o2}.status_ok"
        self._door_name = f"{names.io}.door_closed"
        self._flow_name = f"{names.io}.n2_flow_lpm"
        self._o2_stale_s = names.o2_stale_s
        self._io_stale_s = names.io_stale_s
        self._frozen_s = cfg.limits.o2_frozen_s
        self.purge_needed_l = cfg.booth.purge_volumes * cfg.booth.volume_l
        self.purged_l = 0.0
        self._last_now: float | None = None
        self._last_value: float | None = None
        self._changed_at: float | None = None
        self._ok_since: float | None = None
        #: The highest reading of the stable period that began at ``_ok_since``.
        self._ok_max_ppm = 0.0
        #: Distinct samples (by their timestamps) in the current stable period, and the last.
        self._samples = 0
        self._sample_ts: float | None = None

    def update(self, snap: Snapshot, limit_ppm: float, stable_s: float) -> O2State:
        now = snap.now
        dt = 0.0 if self._last_now is None else min(max(now - self._last_now, 0.0), PURGE_MAX_DT_S)
        self._last_now = now
        if not is_true(snap, self._door_name, self._io_stale_s):
            self.purged_l = 0.0
        else:
            flow = fresh_value(snap, self._flow_name, self._io_stale_s)
            if flow is not None and flow > 0.0:
                self.purged_l = min(self.purged_l + flow * dt / 60.0, self.purge_needed_l)
        ppm = fresh_value(snap, self._ppm_name, self._o2_stale_s)
        frozen = False
        if ppm is not None:
            if ppm != self._last_value or self._changed_at is None:
                self._last_value = ppm
                self._changed_at = now
            frozen = now - self._changed_at >= self._frozen_s
        limit = min(limit_ppm, O2_ABSOLUTE_MAX_PPM)
        why = ""
        if ppm is None:
            why = "O2 reading stale or bad"
        elif not is_true(snap, self._status_name, self._o2_stale_s):
            why = "O2 analyzer reports a fault"
        elif ppm < 0.0 or ppm > limit:
            why = f"O2 {ppm:.0f} ppm over the limit {limit:.0f} ppm"
        elif frozen:
            why = f"O2 reading frozen at {ppm:.0f} ppm"
        elif self.purged_l < self.purge_needed_l:
            why = f"purge incomplete: {self.purged_l:.0f} of {self.purge_needed_l:.0f} L N2"
        if why:
            self._ok_since = None
            return O2State(False, ppm, frozen, self.purged_l, why)
        assert ppm is not None
        if self._ok_since is None or self._ok_max_ppm > limit:
            # A new stable period, or the limit tightened (a job's limit under the idle one)
            # below a reading of the current period: that reading was no stability under this
            # limit, so the period restarts now (conservative: not at the reading after it).
            self._ok_since = now
            self._ok_max_ppm = ppm
            self._samples = 0
        else:
            self._ok_max_ppm = max(self._ok_max_ppm, ppm)
        reading = snap.signals.get(self._ppm_name)
        if reading is not None and reading.ts != self._sample_ts:
            self._sample_ts = reading.ts
            self._samples += 1
        if now - self._ok_since < stable_s or self._samples < O2_STABLE_SAMPLES:
            return O2State(False, ppm, frozen, self.purged_l, "O2 not yet stable")
        return O2State(True, ppm, frozen, self.purged_l, "")


def temperatures(snap: Snapshot, names: Names) -> dict[str, float | None]:
    """Fresh solder temperature per vessel (None when not trustworthy)."""
    out: dict[str, float | None] = {}
    for vessel, dev in names.heaters.items():
        pv = fresh_value(snap, f"{dev}.pv_c", names.heater_stale_s)
        if pv is not None and not is_false(snap, f"{dev}.tc_open", names.heater_stale_s):
            pv = None
        out[vessel] = pv
    return out


def evaluate(
    snap: Snapshot,
    cfg: BoothConfig,
    names: Names,
    o2: O2State,
    *,
    temps_c: Mapping[str, float | None],
    bands_c: Mapping[str, tuple[float, float]],
    flux_done: bool,
    heaters_ok: bool,
    flux_lid_input: bool,
) -> dict[str, bool]:
    """Every permissive by name; ``solder_temp_ok.<vessel>`` per vessel and their conjunction.

    ``flux_lid_input``: the I/O map has a ``flux_lid_closed`` input. Without one the booth has
    no lid to sense (``flux_lid_open`` holds); with one, only a fresh "open" reading counts.
    """
    io, hd = names.io, names.holder
    io_s, hd_s = names.io_stale_s, names.holder_stale_s
    p: dict[str, bool] = {
        "door_closed": is_true(snap, f"{io}.door_closed", io_s),
        "estop_clear": is_true(snap, f"{io}.estop_ok", io_s),
        "exhaust_ok": is_true(snap, f"{io}.exhaust_ok", io_s),
        "n2_supply_ok": is_true(snap, f"{io}.n2_supply_ok", io_s),
        "high_limit_ok": is_true(snap, f"{io}.high_limit_ok", io_s),
        "io_ok": is_false(snap, f"{io}.watchdog_tripped", io_s),
        "holder_ok": (
            is_false(snap, f"{hd}.stall", hd_s)
            and is_false(snap, f"{hd}.comm_lost", hd_s)
            and fresh_value(snap, f"{hd}.z_mm", hd_s) is not None
            and fresh_value(snap, f"{hd}.station", hd_s) is not None
        ),
        "heaters_ok": heaters_ok,
        "o2_ok": o2.ok,
        # A device whose heartbeats are not landing goes safe by itself within its own timeout
        # (the drive withdraws, the controller stops): nothing may be started on it meanwhile.
        "heartbeats_ok": not snap.unbeaten,
        # The devices' own safety settings (I/O watchdog, comm-loss timeouts) read back as the
        # config wants them (drivers: ``layers_ok``, at connect and every minute).
        "layers_ok": all(
            is_true(snap, f"{d}.layers_ok", dc.stale_s)
            for d, dc in cfg.devices.items()
            if dc.watchdog_ms is not None or dc.comm_timeout_s is not None
        ),
    }
    kind = cfg.holder.kind
    vacuum = fresh_value(snap, f"{io}.vacuum_kpa", io_s)
    suction_ok = vacuum is not None and vacuum >= cfg.holder.vacuum_hold_kpa
    hook_ok = is_true(snap, f"{io}.hook_engaged", io_s)
    p["part_held"] = (
        suction_ok if kind == "suction" else hook_ok if kind == "chain" else suction_ok and hook_ok
    )
    level = fresh_value(snap, f"{io}.flux_level_pct", io_s)
    p["flux_level_ok"] = level is not None and level >= cfg.flux.level_low_pct
    p["flux_done"] = flux_done
    p["flux_lid_open"] = not flux_lid_input or is_false(snap, f"{io}.flux_lid_closed", io_s)
    all_ok = True
    for vessel, (lo, hi) in bands_c.items():
        t = temps_c.get(vessel)
        ok = t is not None and lo <= t <= hi
        p[f"solder_temp_ok.{vessel}"] = ok
        all_ok = all_ok and ok
    p["solder_temp_ok"] = all_ok
    return p


def unmet(permissives: Mapping[str, bool], needed: tuple[str, ...]) -> list[str]:
    return [n for n in needed if not permissives.get(n, False)]
