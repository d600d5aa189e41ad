"""The Grafana dashboard is valid JSON whose queries name only metrics the supervisor exports."""

from __future__ import annotations

import json
import re

from tests._util import ROOT

DASHBOARD = ROOT / "ops" / "grafana" / "booth.json"
METRICS_SOURCES = [ROOT / "booth_ctl" / "runtime" / f for f in ("_metrics.py", "_histograms.py")]


def test_every_metric_of_the_dashboard_is_exported() -> None:
    dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exported = {
        name
        for source in METRICS_SOURCES
        for name in re.findall(r'"(booth_[a-z0-9_]+)"', source.read_text(encoding="utf-8"))
    }
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    used = {m for e in exprs for m in re.findall(r"\bbooth_[a-z0-9_]+", e)}
    # Counters get _total, histograms _bucket, in the exposition.
    unknown = {m for m in used if re.sub(r"_(total|bucket)$", "", m) not in exported}
    assert not unknown, f"the dashboard queries metrics nobody exports: {sorted(unknown)}"
    for needed in ("booth_scan_lateness", "booth_o2_ppm", "booth_solder_temperature_celsius",
                   "booth_alarms_active", "booth_device_reading_age_seconds",
                   "booth_device_poll_seconds"):
        assert any(m.startswith(needed) for m in used), needed
    assert dash["__inputs"][0]["pluginId"] == "prometheus"
