"""``boothctl`` commands that need no broker: config/recipe check, mode, records export, errors.

Each runs the installed console script as a process, as an operator would, and checks the exit
code and that every problem is one line naming its file and field.
"""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from booth_ctl.cli import format_status, main
from booth_ctl.records import RecordStore
from tests._util import CONFIG_DIR, render_config, run_tool

pytestmark = pytest.mark.timeout(60)

BOOTHCTL = str(Path(sys.executable).with_name("boothctl"))
RUN_TIMEOUT_S = 30


def boothctl(
    *args: str, env: dict[str, str] | None = None, unset: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    merged = {k: v for k, v in {**os.environ, **(env or {})}.items() if k not in unset}
    return run_tool([BOOTHCTL, *args], timeout_s=RUN_TIMEOUT_S, env=merged)


# ---------------------------------------------------------------------------- config check


@pytest.mark.parametrize("name", ["booth-sim.toml", "booth-sim-cold.toml", "booth.example.toml"])
def test_shipped_configs_are_valid(name: str) -> None:
    r = boothctl("config", "check", str(CONFIG_DIR / name))
    assert r.returncode == 0, r.stderr
    assert "valid" in r.stdout and r.stderr == ""


def test_config_check_says_when_the_io_has_no_flux_lid_input(tmp_path: Path) -> None:
    """The flux-lid rule needs the lid's input: an I/O map without it is valid (the booth may
    have no lid), but the check says the rule is not enforced there; with it, nothing is said."""
    text = (CONFIG_DIR / "maps" / "io-generic.toml").read_text(encoding="utf-8")
    head, _, rest = text.partition("[points.flux_lid_closed]")
    no_lid = tmp_path / "io-no-lid.toml"
    no_lid.write_text(head + rest.split("\n", 4)[4], encoding="utf-8")
    assert "flux_lid_closed" not in no_lid.read_text(encoding="utf-8")

    def edit(data: dict[str, Any]) -> None:
        data["devices"]["io"]["map"] = str(no_lid)

    path = render_config(tmp_path, overrides=edit)
    r = boothctl("config", "check", str(path))
    assert r.returncode == 0, r.stderr
    notes = [line for line in r.stdout.splitlines() if "note:" in line]
    assert len(notes) == 1, r.stdout
    assert "flux_lid_closed" in notes[0] and "NOT enforced" in notes[0], notes
    shipped = boothctl("config", "check", str(CONFIG_DIR / "booth-sim.toml"))
    assert "note:" not in shipped.stdout


def _config_check_refuses(path: Path, count: int, prefix: str) -> tuple[list[str], str]:
    """`boothctl config check` on `path` exits 1 with `count` error lines, each starting with
    `prefix`; returns those lines and what went to stdout."""
    r = boothctl("config", "check", str(path))
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == count, r.stderr
    assert all(line.startswith(prefix) for line in lines), lines
    return lines, r.stdout


def _broken_config(tmp_path: Path, edit: Any) -> Path:
    def overrides(data: dict[str, Any]) -> None:
        edit(data)

    return render_config(tmp_path, overrides=overrides)


def test_config_check_prints_every_problem_with_file_and_field(tmp_path: Path) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["mqtt"]["port"] = 70000
        data["scan"]["period_ms"] = 0
        data["limits"]["bogus_key"] = 1

    path = _broken_config(tmp_path, edit)
    lines, stdout = _config_check_refuses(path, 3, f"{path}: ")
    joined = "\n".join(lines)
    for field in ("mqtt.port", "scan.period_ms", "limits.bogus_key"):
        assert field in joined
    assert stdout == ""


def test_config_check_names_a_bad_register_map_file_and_point(tmp_path: Path) -> None:
    bad_map = tmp_path / "bad-map.toml"
    bad_map.write_text(
        tomli_w.dumps(
            {
                "name": "broken",
                "points": {
                    "a": {"table": "coil", "address": 1, "type": "uint16"},
                    "b": {"table": "holding", "address": -5},
                },
            }
        ),
        encoding="utf-8",
    )

    def edit(data: dict[str, Any]) -> None:
        data["devices"]["io"]["map"] = str(bad_map)

    path = _broken_config(tmp_path, edit)
    _config_check_refuses(path, 2, f"{bad_map}: points.")


def test_config_check_cross_field_rule_and_toml_syntax(tmp_path: Path) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["vessels"]["solder1"]["controller"] = "io"

    r = boothctl("config", "check", str(_broken_config(tmp_path, edit)))
    assert r.returncode == 1
    # Two lines: the vessel's controller is not one, and heater1 is left heating nothing.
    lines = r.stderr.splitlines()
    assert len(lines) == 2 and "vessels.solder1.controller" in lines[0], r.stderr
    assert "devices.heater1: a temp_controller that no vessel names" in lines[1], r.stderr

    bad = tmp_path / "syntax.toml"
    bad.write_text('booth_id = "x"\n[mqtt\n', encoding="utf-8")
    r = boothctl("config", "check", str(bad))
    assert r.returncode == 1
    assert r.stderr.startswith(f"{bad}: not valid TOML") and "line 2" in r.stderr

    r = boothctl("config", "check", str(tmp_path / "absent.toml"))
    assert r.returncode == 1
    assert r.stderr.strip() == f"{tmp_path / 'absent.toml'}: cannot read: No such file or directory"


# ---------------------------------------------------------------------------- recipe check


def test_recipe_check_valid_and_every_problem(tmp_path: Path) -> None:
    config = render_config(tmp_path)
    demo = CONFIG_DIR / "recipes" / "demo.toml"
    r = boothctl("recipe", "check", str(demo), "--config", str(config))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"{demo}: valid")

    text = demo.read_text(encoding="utf-8")
    bad = tmp_path / "bad.toml"
    bad.write_text(
        text.replace("o2_limit_ppm = 1000.0", "o2_limit_ppm = 20000.0")
        .replace("solids_wt_pct = 5.0", "solids_wt_pct = 15.0")
        .replace('vessel = "solder1"', 'vessel = "nowhere"'),
        encoding="utf-8",
    )
    # $BOOTH_CONFIG is the default --config.
    r = boothctl("recipe", "check", str(bad), env={"BOOTH_CONFIG": str(config)})
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert all(line.startswith(f"{bad}: ") for line in lines), lines
    joined = "\n".join(lines)
    for field in ("o2_limit_ppm", "flux.solids_wt_pct", "dips[0].vessel"):
        assert field in joined, joined


def test_recipe_check_with_an_unusable_config_is_one_line(tmp_path: Path) -> None:
    r = boothctl(
        "recipe",
        "check",
        str(CONFIG_DIR / "recipes" / "demo.toml"),
        "--config",
        str(tmp_path / "x"),
    )
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and str(tmp_path / "x") in r.stderr


def test_recipe_check_without_a_config_uses_the_booths_beside_the_recipe_folder(
    tmp_path: Path,
) -> None:
    """``boothctl recipe check PATH`` alone, on a PC without an installed booth: checked against
    every booth config next to the recipe folder that takes its recipes from it."""
    demo = CONFIG_DIR / "recipes" / "demo.toml"
    r = boothctl("recipe", "check", str(demo), unset=("BOOTH_CONFIG",))
    assert r.returncode == 0, r.stderr
    assert "sim-01" in r.stdout and "sim-cold" in r.stdout, r.stdout

    recipes = tmp_path / "recipes"
    recipes.mkdir()
    deep = recipes / "deep.toml"
    deep.write_text(
        demo.read_text(encoding="utf-8").replace("depth_mm = 3.0", "depth_mm = 30.0"),
        encoding="utf-8",
    )
    lone = boothctl("recipe", "check", str(deep), unset=("BOOTH_CONFIG",))
    assert lone.returncode == 2 and "--config" in lone.stderr, lone.stderr
    # A booth config beside the folder that takes its recipes from it.
    render_config(tmp_path, overrides=lambda d: d["records"].update(recipes_dir="recipes"))
    r = boothctl("recipe", "check", str(deep), unset=("BOOTH_CONFIG",))
    assert r.returncode == 1, r.stdout + r.stderr
    assert "dips[0].depth_mm" in r.stderr, r.stderr


# ---------------------------------------------------------------------------- records and mode


def _records_path(config: Path) -> Path:
    return Path(tomllib.loads(config.read_text(encoding="utf-8"))["records"]["path"])


def _store_with_lot(config: Path, lot: str) -> None:
    with RecordStore(_records_path(config)) as store:
        store.record_events(
            [
                ("job_started", {"lot_id": lot, "recipe": "demo", "units": 2}),
                ("unit_started", {"lot_id": lot, "unit": 1}),
                (
                    "dip",
                    {
                        "lot_id": lot,
                        "unit": 1,
                        "vessel": "solder1",
                        "o2_ppm": 52.5,
                        "solder_temp_c": 247.5,
                        "depth_mm": 3.0,
                        "dwell_s": 1.0,
                    },
                ),
                ("unit_completed", {"lot_id": lot, "unit": 1}),
                ("unit_started", {"lot_id": lot, "unit": 2}),
                ("unit_rejected", {"lot_id": lot, "unit": 2, "reason": "O2 over the limit"}),
                ("job_completed", {"lot_id": lot, "units_done": 1, "units_rejected": 1}),
            ]
        )


def test_records_export_csv(tmp_path: Path) -> None:
    config = render_config(tmp_path)
    _store_with_lot(config, "LOT-7")
    out = tmp_path / "lot.csv"
    r = boothctl("records", "export", "--lot", "LOT-7", "--out", str(out), "--config", str(config))
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert [row["unit"] for row in rows] == ["1", "2"]
    assert rows[0]["o2_ppm"] == "52.5" and rows[0]["solder_temp_c"] == "247.5"
    assert rows[0]["unit_outcome"] == "completed"
    assert rows[1]["unit_outcome"] == "rejected" and rows[1]["reject_reason"] == "O2 over the limit"

    r = boothctl("records", "export", "--lot", "LOT-7", "--config", str(config))
    assert r.returncode == 0 and r.stdout.startswith("lot_id,job_id,recipe")

    r = boothctl("records", "export", "--lot", "NOPE", "--config", str(config))
    assert r.returncode == 1 and "NOPE" in r.stderr and r.stdout == ""


def test_records_and_mode_without_a_store_name_records_path(tmp_path: Path) -> None:
    config = render_config(tmp_path)
    for args in (("records", "export", "--lot", "L"), ("mode", "local")):
        r = boothctl(*args, "--config", str(config))
        assert r.returncode == 2
        assert "records.path" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_mode_switch_is_stored_with_who(tmp_path: Path) -> None:
    config = render_config(tmp_path)
    _store_with_lot(config, "LOT-1")  # creates the store, as the supervisor would
    r = boothctl("mode", "--config", str(config))
    assert (r.returncode, r.stdout.strip()) == (0, "remote")
    r = boothctl("mode", "local", "--config", str(config), env={"SUDO_USER": "alice"})
    assert r.returncode == 0 and r.stdout.startswith("local (was remote")
    with RecordStore(_records_path(config)) as store:
        assert store.get_mode() == "local"
        audit = [a for a in store.command_audit() if a["command"] == "mode"]
    assert audit and audit[-1]["who"] == "boothctl:alice"
    # Judged as a person at the booth on the cli link, and audited so.
    assert audit[-1]["source"] == {"link": "cli", "user": "alice", "role": "engineer"}
    r = boothctl("mode", "sideways", "--config", str(config))
    assert r.returncode == 2 and "invalid choice" in r.stderr


HELP_ARGS = (
    (),
    ("run",),
    ("send",),
    ("status",),
    ("watch",),
    ("mode",),
    ("records",),
    ("records", "export"),
    ("config", "check"),
    ("recipe", "check"),
)


@pytest.mark.parametrize("args", HELP_ARGS, ids=lambda a: " ".join(a) or "boothctl")
def test_every_command_has_help(args: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    # In-process: argparse's help and usage paths, without a process start per command.
    with pytest.raises(SystemExit) as exit_:
        main([*args, "--help"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith("usage: boothctl")


@pytest.mark.parametrize("args", [(), ("records", "export"), ("frobnicate",), ("watch", "--x")])
def test_usage_errors_exit_2(args: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(list(args))
    assert exit_.value.code == 2
    assert "usage: boothctl" in capsys.readouterr().err


# ---------------------------------------------------------------------------- logs and watch view


def test_log_lines_are_one_line_with_journal_priority() -> None:
    import logging

    from booth_ctl.cli import OneLineFormatter

    try:
        raise ValueError("bad\nthing")
    except ValueError:
        record = logging.LogRecord(
            "booth_ctl.x", logging.ERROR, __file__, 1, "failed: %s", ("io",), sys.exc_info()
        )
    plain = OneLineFormatter(journal=False).format(record)
    journal = OneLineFormatter(journal=True).format(record)
    assert "\n" not in plain and plain.startswith("ERROR booth_ctl.x: failed: io | Traceback")
    assert "ValueError: bad | thing" in plain
    assert journal == "<3>" + plain  # syslog priority 3 (err) for journald's level


def test_watch_frame_renders_state_permissives_alarms_and_trends() -> None:
    from booth_ctl.cli._watch import BoothView, render, sparkline

    view = BoothView("b1")
    view.apply("online", True, 0.0)
    status = {
        "state": "execute",
        "ready": False,
        "mode": "remote",
        "job": {"lot_id": "L9", "recipe": "demo", "unit": 2, "units": 3, "step": "dip_dwell"},
        "alarms": [{"id": "a1", "code": "door_open", "severity": "warning", "text": "door open"}],
        "interlocks": {"door_closed": False, "o2_ok": True},
    }
    assert view.apply("status", status, 0.0)
    for i, o2 in enumerate((100.0, 90.0, 80.0)):
        view.apply("telemetry", {"o2_ppm": o2, "door_closed": False}, float(i))
    assert not view.apply("events", {"type": "unit_started"}, 3.0)  # not shown: no redraw
    plain = render(view, 3.0, color=False)
    assert "state  EXECUTE" in plain and "lot L9" in plain and "unit 2 of 3" in plain
    assert "○ door_closed" in plain and "● o2_ok" in plain
    assert "[warning] a1 door_open: door open  (NOT ACKED)" in plain
    o2_line = next(line for line in plain.splitlines() if line.strip().startswith("O2"))
    assert "80.0" in o2_line and o2_line.endswith(sparkline([100.0, 90.0, 80.0]))
    assert sparkline([100.0, 90.0, 80.0]) == "█▅▁"
    assert "stale" not in plain
    assert "stale: 10 s old" in render(view, 12.0, color=False)
    colored = render(view, 3.0, color=True)
    assert "\x1b[31m○ \x1b[0m\x1b[31mdoor_closed" in colored  # unmet: red


def test_status_pretty_shows_the_job_as_words() -> None:
    status = {
        "state": "execute",
        "ready": False,
        "online": True,
        "mode": "remote",
        "job": {
            "lot_id": "LOT-7",
            "recipe": "demo",
            "units": 3,
            "unit": 2,
            "units_done": 1,
            "units_rejected": 0,
            "step": "dip_dwell",
        },
        "alarms": [],
        "interlocks": {"door_closed": True, "o2_ok": False},
    }
    lines = format_status(status).splitlines()
    assert lines[1] == (
        "job        LOT-7  recipe demo  unit 2 of 3  (done 1, rejected 0)  step dip_dwell"
    )
    assert "  OK  door_closed" in lines and "  NOT o2_ok" in lines
