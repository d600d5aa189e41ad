"""The systemd unit (verify, hardening score, the settings the contract needs) and the install path.

``systemd-analyze verify`` insists that ExecStart's binary exists, which it does only once
installed; the check runs on a copy of the unit whose ExecStart points at this environment's
``boothctl`` — nothing else of the unit is changed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests._util import ROOT, run_tool

pytestmark = pytest.mark.timeout(60)

UNIT = ROOT / "systemd" / "boothctl.service"
INSTALLED_BOOTHCTL = "/opt/booth/venv/bin/boothctl"
MAX_EXPOSURE = 1.5
SYSTEMD_ANALYZE = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"
RUN_TIMEOUT_S = 30


def _unit_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text(encoding="utf-8").splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


@pytest.fixture
def unit_copy(tmp_path: Path) -> Path:
    text = UNIT.read_text(encoding="utf-8")
    assert f"ExecStart={INSTALLED_BOOTHCTL} run --config /etc/booth/booth.toml" in text
    here = str(Path(sys.executable).with_name("boothctl"))
    out = tmp_path / "boothctl.service"
    out.write_text(text.replace(INSTALLED_BOOTHCTL, here), encoding="utf-8")
    return out


def _analyze(*args: str) -> subprocess.CompletedProcess[str]:
    return run_tool(
        [SYSTEMD_ANALYZE, *args],
        timeout_s=RUN_TIMEOUT_S,
        env={**os.environ, "SYSTEMD_LOG_COLOR": "0", "SYSTEMD_PAGER": ""},
    )


def test_unit_verifies(unit_copy: Path) -> None:
    r = _analyze("verify", str(unit_copy))
    assert r.returncode == 0, r.stderr
    # Only the copy's own name may appear (no warnings about unknown or bad settings).
    assert r.stderr.strip() == "", r.stderr


def test_unit_hardening_score(unit_copy: Path) -> None:
    r = _analyze("security", "--offline=yes", "--no-pager", str(unit_copy))
    found = re.search(r"Overall exposure level for boothctl\.service: (\d+\.\d+)", r.stdout)
    assert found, r.stdout + r.stderr
    score = float(found.group(1))
    assert score <= MAX_EXPOSURE, r.stdout
    # The README states the measured figure; keep it honest.
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"exposure {score:.1f}" in readme, f"README must state the score {score:.1f}"


def test_unit_has_what_the_contract_needs() -> None:
    s = _unit_settings()
    assert s["Type"] == ["notify"]
    assert s["Restart"] == ["on-failure"]
    assert int(s["WatchdogSec"][0]) > 0
    assert int(s["StartLimitBurst"][0]) >= 1 and int(s["StartLimitIntervalSec"][0]) > 0
    assert s["User"] == ["booth"] and s["Group"] == ["booth"]
    assert s["StateDirectory"] == ["booth"]
    assert s["DevicePolicy"] == ["closed"]
    # Serial lines only: nothing but tty character devices is allowed.
    assert s["DeviceAllow"] and all(v.startswith("char-tty") for v in s["DeviceAllow"])
    assert s["ProtectSystem"] == ["strict"] and s["NoNewPrivileges"] == ["yes"]


def test_example_config_fits_the_unit() -> None:
    import tomllib

    data = tomllib.loads((ROOT / "config" / "booth.example.toml").read_text(encoding="utf-8"))
    # ProtectSystem=strict: the records can only be written in the StateDirectory.
    assert data["records"]["path"].startswith("/var/lib/booth/")
    assert data["metrics"]["host"] == "127.0.0.1"
    serial = [
        d["transport"]["port"]
        for d in data["devices"].values()
        if d["transport"]["type"] in ("rtu", "serial")
    ]
    assert serial and all(p.startswith("/dev/tty") for p in serial)


def test_install_and_uninstall_staged(tmp_path: Path) -> None:
    """install.sh/uninstall.sh into a staging root (no user, no venv, no systemctl)."""
    root = tmp_path / "root"
    env = {**os.environ, "DESTDIR": str(root)}

    def sh(script: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["sh", str(ROOT / "systemd" / script), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=RUN_TIMEOUT_S,
            check=False,
        )

    r = sh("install.sh", "--no-venv")
    assert r.returncode == 0, r.stderr
    conf = root / "etc" / "booth" / "booth.toml"
    assert conf.read_text() == (ROOT / "config" / "booth.example.toml").read_text()
    assert (root / "etc" / "booth" / "maps" / "io-generic.toml").is_file()
    assert (root / "etc" / "booth" / "recipes" / "demo.toml").is_file()
    assert (root / "etc/systemd/system/boothctl.service").read_text() == UNIT.read_text()
    assert os.readlink(root / "usr/local/bin/boothctl") == INSTALLED_BOOTHCTL
    # The installed layout is a valid config: maps resolve next to it.
    check = subprocess.run(
        [str(Path(sys.executable).with_name("boothctl")), "config", "check", str(conf)],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    assert check.returncode == 0, check.stderr

    # A second run keeps the site's config.
    conf.write_text(conf.read_text().replace('booth_id = "booth-01"', 'booth_id = "line-3"'))
    assert sh("install.sh", "--no-venv").returncode == 0
    assert 'booth_id = "line-3"' in conf.read_text()

    records = root / "var" / "lib" / "booth" / "records.sqlite3"
    records.parent.mkdir(parents=True)
    records.write_bytes(b"kept")
    r = sh("uninstall.sh")
    assert r.returncode == 0, r.stderr
    assert not (root / "etc/systemd/system/boothctl.service").exists()
    assert not (root / "opt" / "booth").exists()
    assert not (root / "usr/local/bin/boothctl").exists()
    assert records.read_bytes() == b"kept" and conf.exists()

    r = sh("uninstall.sh", "--purge")
    assert r.returncode == 0, r.stderr
    assert not records.exists() and not conf.exists()
