"""``make demo``'s progress bar (pure: the line it draws from a status)."""

from __future__ import annotations

import io
from typing import Any

import pytest

from devkit.demo import BAR_WIDTH, CLEAR_LINE, Watch, job_fraction, progress_bar


def _status(unit: int, step: str, state: str = "execute") -> dict[str, Any]:
    job = {"lot_id": "L", "recipe": "demo", "units": 3, "unit": unit, "step": step}
    return {"state": state, "job": job}


def test_the_bar_counts_units_and_steps() -> None:
    assert job_fraction(None, 3, 0) == 0.0
    assert job_fraction(_status(1, "load_move")["job"], 3, 0) == 0.0
    half_unit = job_fraction(_status(2, "dip_dwell")["job"], 3, 1)
    assert 1 / 3 < half_unit < 2 / 3
    assert job_fraction(None, 3, 3) == 1.0
    line = progress_bar(_status(2, "dip_dwell"), {"solder_temp_c": 249.94, "o2_ppm": 40}, 3, 1)
    filled = line[1 : 1 + BAR_WIDTH]
    assert filled.count("#") == round(half_unit * BAR_WIDTH) and set(filled) == {"#", "."}
    assert "unit 2 of 3" in line and "step dip_dwell" in line
    assert "solder 249.9 C" in line and "O2 40.0 ppm" in line


def test_on_a_terminal_the_bar_is_redrawn_in_place_and_events_go_above_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    w = Watch("booth/x/", 2, live=True)
    w.status = _status(1, "flux_dwell")
    w._print_progress()
    w.status = _status(1, "dip_dwell")
    w._print_progress()
    w.status = _status(1, "load_move")  # the next unit's first step, before unit_completed
    w._print_progress()
    assert " 0%" not in out.getvalue().rsplit("\r", 1)[-1]  # the bar never goes back
    w._print_event({"type": "unit_completed", "unit": 1})
    w.status = {"state": "complete", "job": None}
    w._print_progress()
    w.end_bar()
    w._print_progress()  # messages still arriving after the end draw nothing
    text = out.getvalue()
    assert text.count("\n") == 2  # the event's line and the end of the bar; no scrolling
    assert text.count("\r") >= 3 and CLEAR_LINE in text
    assert "  unit completed\n" in text
    assert text.rstrip("\n").endswith(CLEAR_LINE)
    assert " 50%  unit 1 of 2" in text.rsplit("\r", 1)[-1]
