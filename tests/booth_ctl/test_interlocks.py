"""Permissives by exhaustive tables: only a GOOD, fresh, safe reading satisfies one."""

from __future__ import annotations

from typing import Any

import pytest

from booth_ctl.config._booth import LoadedConfig, config_from_dict
from booth_ctl.control._image import Names, Snapshot
from booth_ctl.control._interlocks import O2Monitor, O2State, evaluate, temperatures
from drivers import Quality, Reading
from tests.booth_ctl._plant import CONFIG, Plant, sim_config

NOW = 1000.0
O2_OK = O2State(True, 50.0, False, 30.0, "")

#: permissive -> (signal, safe value, unsafe value)
TABLE: dict[str, tuple[str, Any, Any]] = {
    "door_closed": ("io.door_closed", True, False),
    "estop_clear": ("io.estop_ok", True, False),
    "exhaust_ok": ("io.exhaust_ok", True, False),
    "n2_supply_ok": ("io.n2_supply_ok", True, False),
    "high_limit_ok": ("io.high_limit_ok", True, False),
    "io_ok": ("io.watchdog_tripped", False, True),
    # the module's own watchdog setting read back as the config wants it (reset needs it)
    "layers_ok": ("io.layers_ok", True, False),
    "holder_ok": ("holder.stall", False, True),
    "part_held": ("io.vacuum_kpa", 60.0, 10.0),
    "flux_level_ok": ("io.flux_level_pct", 80.0, 5.0),
    "flux_lid_open": ("io.flux_lid_closed", False, True),
    "solder_temp_ok.solder1": ("heater1.pv_c", 250.0, 300.0),
}
#: Signals whose loss (not only their value) clears a permissive.
ALSO = {
    "holder_ok": ("holder.z_mm", 0.0),
    "solder_temp_ok.solder1": ("heater1.tc_open", False),
}

VARIANTS = [
    "good_safe",
    "good_unsafe",
    "stale_quality",
    "old",
    "bad",
    "no_comm",
    "missing",
    "none_value",
    "wrong_type",
]


def _base(loaded: LoadedConfig) -> dict[str, Reading]:
    plant = Plant(loaded)
    plant.outputs.update({"io.exhaust_fan": True, "io.vacuum_pump": True, "io.vacuum_valve": True})
    snap = plant.snapshot()
    return {k: Reading(r.value, NOW, Quality.GOOD) for k, r in snap.signals.items()}


def _variant(signals: dict[str, Reading], name: str, variant: str, safe: Any, bad: Any) -> None:
    if variant == "good_safe":
        signals[name] = Reading(safe, NOW)
    elif variant == "good_unsafe":
        signals[name] = Reading(bad, NOW)
    elif variant == "stale_quality":
        signals[name] = Reading(safe, NOW, Quality.STALE)
    elif variant == "old":
        signals[name] = Reading(safe, NOW - 5.0)
    elif variant == "bad":
        signals[name] = Reading(safe, NOW, Quality.BAD)
    elif variant == "no_comm":
        signals[name] = Reading(safe, NOW, Quality.NO_COMM)
    elif variant == "missing":
        del signals[name]
    elif variant == "none_value":
        signals[name] = Reading(None, NOW)
    elif variant == "wrong_type":
        signals[name] = Reading("yes" if isinstance(safe, bool) else True, NOW)  # type: ignore[arg-type]


def _evaluate(loaded: LoadedConfig, signals: dict[str, Reading]) -> dict[str, bool]:
    snap = Snapshot(NOW, signals)
    names = Names.of(loaded.config)
    temps = temperatures(snap, names)
    return evaluate(
        snap,
        loaded.config,
        names,
        O2_OK,
        temps_c=temps,
        bands_c={"solder1": (240.0, 260.0)},
        flux_done=True,
        heaters_ok=True,
        flux_lid_input=True,
    )


LOADED = sim_config()


def test_all_safe_satisfies_every_permissive() -> None:
    perm = _evaluate(LOADED, _base(LOADED))
    assert all(perm.values()), perm


@pytest.mark.parametrize("permissive", sorted(TABLE))
def test_permissive_true_only_for_good_fresh_safe(permissive: str) -> None:
    """The whole table for one permissive: every variant of its signal, the others all safe."""
    name, safe, bad = TABLE[permissive]
    for variant in VARIANTS:
        signals = _base(LOADED)
        _variant(signals, name, variant, safe, bad)
        perm = _evaluate(LOADED, signals)
        assert perm[permissive] is (variant == "good_safe"), (permissive, variant, perm)
        others = {k: v for k, v in perm.items() if k not in (permissive, "solder_temp_ok")}
        assert all(others.values()), f"{name} {variant} leaked into {others}"
        assert perm["solder_temp_ok"] is perm["solder_temp_ok.solder1"]


@pytest.mark.parametrize("permissive", sorted(ALSO))
def test_supporting_signals_count_too(permissive: str) -> None:
    name, safe = ALSO[permissive]
    for variant in VARIANTS[2:]:
        signals = _base(LOADED)
        _variant(signals, name, variant, safe, safe)
        assert _evaluate(LOADED, signals)[permissive] is False, (name, variant)


def test_a_drive_that_lost_comm_voids_holder_ok() -> None:
    """The drive withdrew by itself (or cannot say it did not): no dip may count on it."""
    for variant in ["good_unsafe", *VARIANTS[2:]]:
        signals = _base(LOADED)
        _variant(signals, "holder.comm_lost", variant, False, True)
        assert _evaluate(LOADED, signals)["holder_ok"] is False, variant
    signals = _base(LOADED)
    _variant(signals, "holder.comm_lost", "good_safe", False, True)
    assert _evaluate(LOADED, signals)["holder_ok"] is True


def test_open_thermocouple_voids_the_temperature() -> None:
    signals = _base(LOADED)
    signals["heater1.tc_open"] = Reading(True, NOW)
    assert _evaluate(LOADED, signals)["solder_temp_ok.solder1"] is False


def _with_holder(kind: str) -> LoadedConfig:
    import tomllib

    data = tomllib.loads((CONFIG / "booth-sim.toml").read_text(encoding="utf-8"))
    data["holder"]["kind"] = kind
    for dev in data["devices"].values():
        if "map" in dev:
            dev["map"] = str(CONFIG / dev["map"])
    return config_from_dict(data, CONFIG / "booth-sim.toml")


@pytest.mark.parametrize("kind", ["suction", "chain", "both"])
def test_part_held_by_holder_kind(kind: str) -> None:
    loaded = _with_holder(kind)
    for vacuum in (True, False):
        for hook in (True, False):
            held = {"suction": vacuum, "chain": hook, "both": vacuum and hook}[kind]
            signals = _base(loaded)
            signals["io.vacuum_kpa"] = Reading(60.0 if vacuum else 0.0, NOW)
            signals["io.hook_engaged"] = Reading(hook, NOW)
            assert _evaluate(loaded, signals)["part_held"] is held, (kind, vacuum, hook)


def test_vacuum_exactly_at_the_hold_threshold_holds() -> None:
    signals = _base(LOADED)
    signals["io.vacuum_kpa"] = Reading(LOADED.config.holder.vacuum_hold_kpa, NOW)
    assert _evaluate(LOADED, signals)["part_held"] is True


# ---------------------------------------------------------------------------- O2


class O2Feed:
    """Feeds an O2Monitor on a virtual clock."""

    def __init__(self) -> None:
        self.loaded = LOADED
        self.mon = O2Monitor(LOADED.config, Names.of(LOADED.config))
        self.t = 0.0
        self.ppm: float = 100.0
        self.quality = Quality.GOOD
        self.status_ok = True
        self.door = True
        self.flow_lpm = 300.0
        self.jitter = True
        self.state = O2State(False, None, False, 0.0, "")

    def step(
        self, seconds: float, limit: float = 1000.0, stable_s: float = 1.0, dt: float = 0.05
    ) -> O2State:
        end = self.t + seconds
        while self.t < end - 1e-9:
            self.t += dt
            ppm = self.ppm + (0.1 * ((int(self.t / dt)) % 3) if self.jitter else 0.0)
            sig = {
                "o2.ppm": Reading(ppm, self.t, self.quality),
                "o2.status_ok": Reading(self.status_ok, self.t),
                "io.door_closed": Reading(self.door, self.t),
                "io.n2_flow_lpm": Reading(self.flow_lpm, self.t),
            }
            self.state = self.mon.update(Snapshot(self.t, sig), limit, stable_s)
        return self.state


def _purged() -> O2Feed:
    feed = O2Feed()
    need_s = feed.mon.purge_needed_l / feed.flow_lpm * 60.0
    assert feed.step(need_s - 0.2).ok is False
    assert "purge incomplete" in feed.state.why
    feed.step(0.3 + 1.0)
    assert feed.state.ok
    return feed


def test_o2_needs_the_purge_volume_since_the_door_closed() -> None:
    feed = _purged()
    feed.door = False
    assert feed.step(0.1).ok is False
    feed.door = True
    assert feed.step(2.0).ok is False
    assert feed.state.purged_l < feed.mon.purge_needed_l
    feed.step(6.0)
    assert feed.state.ok


def test_o2_needs_the_stable_time() -> None:
    feed = _purged()
    feed.ppm = 1500.0
    assert feed.step(0.05).ok is False
    feed.ppm = 900.0
    assert feed.step(2.9, stable_s=3.0).ok is False
    assert feed.step(0.2, stable_s=3.0).ok is True


@pytest.mark.parametrize("limit", [500.0, 1000.0, 20_000.0])
def test_o2_over_the_limit_or_over_10000_is_never_ok(limit: float) -> None:
    feed = _purged()
    feed.ppm = min(limit, 10_000.0) + 1.0
    assert feed.step(5.0, limit=limit).ok is False
    feed.ppm = min(limit, 10_000.0) - 1.0
    assert feed.step(5.0, limit=limit).ok is True


def test_frozen_o2_reading_is_a_fault() -> None:
    feed = _purged()
    feed.jitter = False
    frozen_s = LOADED.config.limits.o2_frozen_s
    assert feed.step(frozen_s - 1.0).ok is True
    assert feed.step(1.5).ok is False
    assert feed.state.frozen
    feed.jitter = True
    assert feed.step(2.0).ok is True


@pytest.mark.parametrize("quality", [Quality.STALE, Quality.BAD, Quality.NO_COMM])
def test_o2_reading_not_good_is_unsafe(quality: Quality) -> None:
    feed = _purged()
    feed.quality = quality
    assert feed.step(0.05).ok is False


def test_analyzer_status_fault_is_unsafe() -> None:
    feed = _purged()
    feed.status_ok = False
    assert feed.step(0.05).ok is False


def test_no_flow_no_purge_credit() -> None:
    feed = O2Feed()
    feed.flow_lpm = 0.0
    assert feed.step(60.0).ok is False
    assert feed.state.purged_l == 0.0


def test_o2_stable_time_restarts_when_the_limit_tightens() -> None:
    # Review S2: 900 ppm stable under the idle limit 1000, then a job's 500 ppm limit: readings
    # over 500 are no stability under 500, whatever the time already counted.
    feed = _purged()
    feed.ppm = 900.0
    assert feed.step(5.0, limit=1000.0, stable_s=3.0).ok is True
    feed.ppm = 450.0
    assert feed.step(0.02, limit=500.0, stable_s=3.0).ok is False
    assert feed.state.why == "O2 not yet stable"
    assert feed.step(2.9, limit=500.0, stable_s=3.0).ok is False
    assert feed.step(0.2, limit=500.0, stable_s=3.0).ok is True


def test_o2_readings_already_under_a_tighter_limit_keep_their_stable_time() -> None:
    feed = _purged()
    feed.ppm = 300.0
    assert feed.step(5.0, limit=1000.0, stable_s=3.0).ok is True
    assert feed.step(0.05, limit=500.0, stable_s=3.0).ok is True
    # A looser limit never makes a stable reading unstable.
    assert feed.step(0.05, limit=1000.0, stable_s=3.0).ok is True


def test_o2_one_high_reading_in_the_stable_period_counts_against_a_tighter_limit() -> None:
    feed = _purged()
    feed.ppm = 300.0
    feed.step(5.0, limit=1000.0, stable_s=3.0)
    feed.ppm = 800.0
    feed.step(0.05, limit=1000.0, stable_s=3.0)  # still ok under 1000
    feed.ppm = 300.0
    assert feed.step(1.0, limit=1000.0, stable_s=3.0).ok is True
    assert feed.step(0.05, limit=500.0, stable_s=3.0).ok is False
    assert feed.step(3.0, limit=500.0, stable_s=3.0).ok is True
