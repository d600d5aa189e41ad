"""The one table of safety points: complete for what the supervisor touches, shared by its three
users, met by the shipped maps, and documented."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from booth_ctl.config._booth import load_config
from booth_ctl.config._layers import has_comm_loss, without_comm_loss
from drivers import Reading
from drivers import _connect as connect
from drivers._connect import LAYERS_OK
from drivers._safety_points import SAFETY_POINTS, SETUP_POINTS, missing_points, points_for
from sim_hw import load_sim_config
from tests._util import CONFIG_DIR, ROOT
from tests.booth_ctl._plant import demo_recipe, new_loop

#: Points the supervisor uses that no rule of CONTRACT s.4 rests on: the stack light and the
#: buzzer are for people.
NOT_SAFETY = frozenset({"light_red", "light_amber", "light_green", "buzzer"})
#: Inputs of optional equipment: read only where the map has them (a flux vessel with no lid has
#: nothing to sense), so no map can be required to carry them.
OPTIONAL = frozenset({"flux_lid_closed"})


class _Recording(Mapping[str, Reading]):
    """The process image, noting every signal the scan looks at."""

    def __init__(self, signals: Mapping[str, Reading], seen: set[str]) -> None:
        self._signals, self._seen = signals, seen

    def __getitem__(self, key: str) -> Reading:
        self._seen.add(key)
        return self._signals[key]

    def get(self, key: str, default: Any = None) -> Any:
        self._seen.add(key)
        return self._signals.get(key, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self._signals)

    def __len__(self) -> int:
        return len(self._signals)


def _touched_in_a_job() -> tuple[set[str], set[str]]:
    """Every signal the controller reads and every output it writes, from start through reset
    to a completed job."""
    loop = new_loop()
    seen: set[str] = set()
    written: set[str] = set()
    scan = loop.ctl.scan

    def recording_scan(snap: Any) -> Any:
        out = scan(type(snap)(snap.now, _Recording(snap.signals, seen), snap.wall))
        written.update(out.outputs)
        return out

    loop.ctl.scan = recording_scan
    loop.run_for(0.5)
    loop.ctl.reset()
    loop.run_until(lambda: loop.ctl.state == "idle", 120.0, "idle")
    loop.ctl.start_job("LOT-1", "demo", demo_recipe(loop.plant.loaded), 1)
    loop.run_until(lambda: loop.ctl.state == "complete", 120.0, "complete")
    return seen, written


def test_every_point_the_controller_reads_or_writes_is_in_the_table() -> None:
    loaded = load_config(CONFIG_DIR / "booth-sim.toml")
    kinds = {name: d.kind for name, d in loaded.config.devices.items()}
    seen, written = _touched_in_a_job()
    assert written, "the job wrote no outputs"
    table = {(p.kind, p.point): p for p in SAFETY_POINTS if "supervisor" in p.users}
    for name in sorted(seen | written):
        device, _, point = name.partition(".")
        if kinds.get(device) in (None, "o2_analyzer") or point in NOT_SAFETY | OPTIONAL:
            continue
        if point == LAYERS_OK:
            continue  # made by the driver from the read-back settings, not a point of a map
        entry = table.get((kinds[device], point))
        assert entry is not None, f"{name}: used by the controller, not in the safety table"
        if name in written:
            assert entry.access == "w", f"{name}: written, but the table says read-only"


def test_the_three_users_read_the_one_table() -> None:
    assert connect.SETUP_POINTS is SETUP_POINTS
    assert dict(SETUP_POINTS) == {
        "remote_io": ("watchdog_ms", "watchdog_timeout_ms"),
        "temp_controller": ("comm_timeout_s", "comm_timeout_s"),
        "holder_drive": ("comm_timeout_s", "comm_timeout_s"),
    }
    for p in SAFETY_POINTS:
        assert p.users, p
        if "setup" in p.users:
            assert {"supervisor", "sim"} <= p.users and p.access == "w", p
    # Every point the simulator serves that the supervisor relies on is one table row.
    for kind in ("remote_io", "temp_controller", "holder_drive"):
        sim = {p.point for p in points_for(kind, "sim")}
        assert {p.point for p in points_for(kind, "setup")} <= sim


def test_the_shipped_maps_have_every_point_for_every_user() -> None:
    for name in ("booth-sim.toml", "booth-sim-cold.toml", "booth.example.toml"):
        loaded = load_config(CONFIG_DIR / name)
        for dev, regmap in loaded.maps.items():
            kind = loaded.config.devices[dev].kind
            # the simulator serves vendor models through personalities, not from their maps
            users = ("supervisor", "setup", "sim") if name != "booth.example.toml" else (
                "supervisor", "setup")
            for user in users:
                missing = missing_points(dev, kind, regmap, user)  # type: ignore[arg-type]
                if not has_comm_loss(loaded.config.devices[dev], regmap):
                    # a controller without its own comm-loss layer: the I/O watchdog covers it
                    missing = without_comm_loss(missing)
                assert missing == [], (name, dev, user)
    assert set(load_sim_config(CONFIG_DIR / "booth-sim.toml").maps) == {"heater1", "io", "holder"}


def test_every_point_of_the_table_is_documented() -> None:
    doc = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    for p in SAFETY_POINTS:
        assert f"| `{p.kind}` | `{p.point}` |" in doc, f"{p.kind}.{p.point} not in configuration.md"
