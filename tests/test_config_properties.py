"""Whatever numbers a booth config carries, an accepted config keeps the rules of CONTRACT s.4:
"top" out of every bath, the trip and idle temperatures under the flux's autoignition point less
the margin, the checks that guard a dip not switched off. A refused one names a broken field."""

from __future__ import annotations

import copy
import tomllib
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from booth_ctl.config._alloys import AUTOIGNITION_MARGIN_C, FLUX_AUTOIGNITION_C
from booth_ctl.config._booth import BoothConfig
from booth_ctl.config._rules import APPROACH_GAP_TOLERANCES, TRAVEL_CLEARANCE_MM
from tests._util import CONFIG_DIR

BASE = tomllib.loads((CONFIG_DIR / "booth-sim.toml").read_text(encoding="utf-8"))

#: (section, key, strategy): values on both sides of every bound.
FIELDS: list[tuple[str, str, st.SearchStrategy[Any]]] = [
    ("flux", "agent", st.sampled_from(["alcohol", "ketone", "ester", "ether"])),
    ("limits", "temp_max_c", st.floats(50, 450)),
    ("limits", "o2_stable_s", st.floats(0.001, 10)),
    ("limits", "o2_stale_s", st.floats(0.01, 10)),
    ("limits", "temp_stale_s", st.floats(0.01, 10)),
    ("limits", "runaway_max_error_c_s", st.floats(1, 1e9)),
    ("limits", "heating_check_gain_c", st.floats(1e-6, 100)),
    ("holder", "vacuum_hold_kpa", st.floats(0.01, 101)),
    ("holder", "z_travel_mm", st.floats(0, 100)),
    ("holder", "z_tolerance_mm", st.floats(0.1, 10)),
    ("holder", "approach_gap_mm", st.floats(0, 100)),
    ("booth", "volume_l", st.floats(1e-6, 100)),
    ("vessels.solder1", "idle_setpoint_c", st.floats(0, 450)),
]


def _section(data: dict[str, Any], path: str) -> dict[str, Any]:
    node = data
    for part in path.split("."):
        node = node[part]
    return node


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_an_accepted_config_keeps_the_rules(data_st: st.DataObject) -> None:
    """One to three numbers off the shipped config at a time: most draws stay close enough to be
    accepted, so both sides of every bound are exercised."""
    chosen = data_st.draw(
        st.lists(st.sampled_from(FIELDS), min_size=1, max_size=3, unique_by=lambda f: f[:2])
    )
    data = copy.deepcopy(BASE)
    values: dict[str, Any] = {}
    for section, key, strategy in chosen:
        values[f"{section}.{key}"] = _section(data, section)[key] = data_st.draw(strategy)
    try:
        cfg = BoothConfig.model_validate(data)
    except ValidationError as exc:
        text = str(exc)
        assert any(dotted.rpartition(".")[2] in text for dotted in values), text
        return
    ceiling_c = FLUX_AUTOIGNITION_C[cfg.flux.agent] - AUTOIGNITION_MARGIN_C
    lim, h = cfg.limits, cfg.holder
    assert lim.temp_max_c < ceiling_c
    for v in cfg.vessels.values():
        assert v.idle_setpoint_c + v.idle_band_c < min(lim.temp_max_c, ceiling_c)
    surfaces = [cfg.flux.surface_z_mm, *(v.surface_z_mm for v in cfg.vessels.values())]
    assert h.z_travel_mm + h.z_tolerance_mm + TRAVEL_CLEARANCE_MM <= min(surfaces)
    assert h.approach_gap_mm >= APPROACH_GAP_TOLERANCES * h.z_tolerance_mm
    assert lim.o2_stable_s >= 1.0 and lim.o2_stale_s <= 5.0 and lim.temp_stale_s <= 5.0
    assert lim.runaway_max_error_c_s <= 3600.0 and lim.heating_check_gain_c >= 0.5
    assert h.vacuum_hold_kpa >= 20.0 and cfg.booth.volume_l >= 0.5
