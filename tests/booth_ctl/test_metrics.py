"""The Prometheus endpoint: the collector on a scripted supervisor, and a scrape of a whole booth.

The first tests drive ``BoothCollector`` and ``MetricsServer`` in-process with a stand-in for the
supervisor, so every figure is known; the last one scrapes ``boothctl run`` of a ``BoothStack``
over HTTP, as Prometheus would.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from booth_ctl.config._booth import BoothConfig, MetricsConfig, load_config
from booth_ctl.control._image import Snapshot
from booth_ctl.runtime._histograms import PollTimes
from booth_ctl.runtime._metrics import BoothCollector, MetricsServer
from booth_ctl.runtime._scanstats import ScanStats
from devkit.booth import BoothStack
from drivers import LineRate, Quality, Reading
from tests._util import free_port, render_config, wait_for

pytestmark = pytest.mark.timeout(60)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
SCRAPE_TIMEOUT_S = 5.0


def parse(text: str) -> Samples:
    """``{(sample name, sorted labels): value}`` of an exposition text."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


@dataclass
class FakeController:
    status_: dict[str, Any]

    def status(self) -> dict[str, Any]:
        return self.status_


@dataclass
class FakeSupervisor:
    cfg: BoothConfig
    stats: ScanStats
    signals: dict[str, Reading]
    controller: FakeController
    now: float = field(default_factory=time.monotonic)
    poll_times: PollTimes = field(default_factory=PollTimes)

    def snapshot(self, now: float) -> Snapshot:
        return Snapshot(now=now, signals=self.signals)


@dataclass
class FakeLink:
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    connections: int = 3


class FakeHealth:
    failures = 7


class FakeDevice:
    health = FakeHealth()


@pytest.fixture
def supervisor(tmp_path: Path) -> FakeSupervisor:
    cfg = load_config(render_config(tmp_path)).config
    now = time.monotonic()
    stats = ScanStats(0.010)
    # 100 on-time scans (lateness 0.1 ms .. 10 ms, no time taken), then one that overran.
    for i in range(100):
        stats.record(now - 1.0 + i * 0.01, (i + 1) * 0.0001, 0.0)
    stats.record(now, 0.012, 0.001)
    signals = {
        "heater1.pv_c": Reading(247.5, now),
        "heater1.sv_c": Reading(250.0, now),
        "heater1.output_pct": Reading(12.0, now),
        "o2.ppm": Reading(55.0, now - 3.0, Quality.STALE),
        "o2.status_ok": Reading(True, now - 3.0, Quality.STALE),
        "io.vacuum_kpa": Reading(61.0, now),
        "io.n2_flow_lpm": Reading(10.0, now),
        "io.door_closed": Reading(True, now),
        "holder.z_mm": Reading(None, now - 9.0, Quality.NO_COMM),
    }
    status = {
        "state": "idle",
        "ready": True,
        "job": None,
        "alarms": [
            {"id": "a1", "code": "o2_high", "severity": "alarm", "acked": False},
            {"id": "a2", "code": "flux_low", "severity": "warning", "acked": True},
        ],
        "interlocks": {"door_closed": True, "o2_ok": False},
    }
    sup = FakeSupervisor(cfg, stats, signals, FakeController(status))
    for took_s in (0.0008, 0.003, 0.03):
        sup.poll_times.record("heater1", took_s)
    return sup


async def test_collector_reports_what_the_supervisor_knows(supervisor: FakeSupervisor) -> None:
    link = FakeLink()
    link.connected.set()

    async def outbox() -> int:
        return 4

    collector = BoothCollector(
        supervisor, link=link, outbox_depth=outbox, devices=lambda: {"heater1": FakeDevice()}
    )
    server = MetricsServer(MetricsConfig(port=free_port()), collector)
    async with server:
        m = parse((await server.render()).decode())

    def v(name: str, **labels: str) -> float:
        return m[(name, tuple(sorted(labels.items())))]

    assert v("booth_solder_temperature_celsius", vessel="solder1") == 247.5
    assert v("booth_solder_setpoint_celsius", vessel="solder1") == 250.0
    assert v("booth_o2_ppm") == 55.0
    assert v("booth_vacuum_kpa") == 61.0 and v("booth_n2_flow_lpm") == 10.0
    assert ("booth_holder_z_mm", ()) not in m  # no value at all: nothing to show
    assert v("booth_permissive", permissive="door_closed") == 1.0
    assert v("booth_permissive", permissive="o2_ok") == 0.0
    assert v("booth_state", booth_state="idle") == 1.0
    assert v("booth_state", booth_state="stopped") == 0.0
    assert v("booth_ready") == 1.0
    assert v("booth_alarms_active", severity="alarm") == 1.0
    assert v("booth_alarms_active", severity="warning") == 1.0
    assert v("booth_alarms_unacked") == 1.0
    # Devices: quality counts, health, staleness, errors.
    assert v("booth_device_ok", device="heater1") == 1.0
    assert v("booth_device_ok", device="o2") == 0.0
    assert v("booth_device_ok", device="holder") == 0.0
    assert v("booth_device_readings", device="o2", quality="stale") == 2.0
    assert v("booth_device_readings", device="holder", quality="no_comm") == 1.0
    assert v("booth_device_reading_age_seconds", device="o2") >= 3.0
    assert ("booth_device_reading_age_seconds", (("device", "holder"),)) not in m
    assert v("booth_device_errors_total", device="heater1") == 7.0
    # Each device's poll time since start, cumulative per bucket (the dashboard's latency panel).
    assert v("booth_device_poll_seconds_bucket", device="heater1", le="0.001") == 1.0
    assert v("booth_device_poll_seconds_bucket", device="heater1", le="0.005") == 2.0
    assert v("booth_device_poll_seconds_bucket", device="heater1", le="+Inf") == 3.0
    assert v("booth_device_poll_seconds_count", device="heater1") == 3.0
    assert v("booth_device_poll_seconds_sum", device="heater1") == pytest.approx(0.0338)
    # The scan: 101 samples, lateness 0.1 .. 10 ms and one of 12 ms that overran.
    assert v("booth_scans_total") == 101.0
    assert v("booth_scan_overruns_total") == 1.0
    assert v("booth_scan_overruns_window") == 1.0
    assert v("booth_scan_lateness_max_seconds") == pytest.approx(0.012)
    assert v("booth_scan_lateness_p50_seconds") == pytest.approx(0.0051, abs=2e-4)
    assert v("booth_scan_period_seconds") == pytest.approx(0.010)
    # The histogram counts every scan since start, cumulative per bucket, for rate() and
    # histogram_quantile().
    assert v("booth_scan_lateness_seconds_bucket", le="0.001") == 10.0
    assert v("booth_scan_lateness_seconds_bucket", le="0.01") == 100.0
    assert v("booth_scan_lateness_seconds_bucket", le="+Inf") == 101.0
    assert v("booth_scan_lateness_seconds_count") == 101.0
    lateness_s = [(i + 1) * 0.0001 for i in range(100)] + [0.012]
    assert v("booth_scan_lateness_seconds_sum") == pytest.approx(sum(lateness_s), rel=1e-6)
    assert v("booth_mqtt_connected") == 1.0
    assert v("booth_mqtt_connections_total") == 3.0
    assert v("booth_outbox_events") == 4.0


async def test_each_lines_load_and_overload_are_reported(supervisor: FakeSupervisor) -> None:
    calm = LineRate("tcp://127.0.0.1:502", busy=0.12, exchange_s_mean=0.0004)
    full = LineRate("rtu:/dev/ttyUSB0", divider=8, busy=0.97, exchange_s_mean=0.031)
    full.overload, full.overloads = "line rtu:/dev/ttyUSB0 cannot keep its safety reads", 2
    rates = {calm.name: calm, full.name: full}
    collector = BoothCollector(supervisor, line_rates=lambda: rates)
    async with MetricsServer(MetricsConfig(port=free_port()), collector) as server:
        m = parse((await server.render()).decode())
    assert m[("booth_line_busy_ratio", (("line", "rtu:/dev/ttyUSB0"),))] == 0.97
    assert m[("booth_line_exchange_seconds", (("line", "rtu:/dev/ttyUSB0"),))] == 0.031
    assert m[("booth_line_read_divider", (("line", "rtu:/dev/ttyUSB0"),))] == 8.0
    assert m[("booth_line_overloaded", (("line", "rtu:/dev/ttyUSB0"),))] == 1.0
    assert m[("booth_line_overloads_total", (("line", "rtu:/dev/ttyUSB0"),))] == 2.0
    assert m[("booth_line_read_divider", (("line", "tcp://127.0.0.1:502"),))] == 1.0
    assert m[("booth_line_overloaded", (("line", "tcp://127.0.0.1:502"),))] == 0.0
    assert m[("booth_line_overloads_total", (("line", "tcp://127.0.0.1:502"),))] == 0.0


async def _http(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(SCRAPE_TIMEOUT_S):
            return await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()


async def test_server_answers_get_only_on_metrics(supervisor: FakeSupervisor) -> None:
    port = free_port()
    async with MetricsServer(MetricsConfig(port=port), BoothCollector(supervisor)):
        ok = await _http(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        head, _, body = ok.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK") and b"text/plain; version=0.0.4" in head
        assert b"booth_info{booth=" in body
        assert (await _http(port, b"GET /nope HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 404")
        assert (await _http(port, b"POST /metrics HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 405")
        assert (await _http(port, b"garbage\r\n\r\n")).startswith(b"HTTP/1.1 400")
        # A client that never finishes its request is dropped when the server stops.
        _, idle = await asyncio.open_connection("127.0.0.1", port)
        idle.write(b"GET /metr")
        await idle.drain()
    idle.close()
    with contextlib.suppress(ConnectionError):
        await idle.wait_closed()


async def test_scrapes_within_the_cache_time_reuse_one_collection(
    supervisor: FakeSupervisor,
) -> None:
    calls = 0

    async def outbox() -> int:
        nonlocal calls
        calls += 1
        return calls

    server = MetricsServer(
        MetricsConfig(port=free_port()), BoothCollector(supervisor, outbox_depth=outbox)
    )
    async with server:
        first = await server.render()
        second = await server.render()
    assert first is second and calls == 1


# ---------------------------------------------------------------------------- a whole booth


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BoothStack]:
    with BoothStack(tmp_path_factory.mktemp("metrics")) as s:
        yield s


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=SCRAPE_TIMEOUT_S) as r:
        return str(r.read().decode())


@pytest.mark.process
async def test_scrape_of_a_running_booth(stack: BoothStack) -> None:
    port = int(stack.data["metrics"]["port"])
    devices = list(stack.data["devices"])

    async def healthy() -> Samples | None:
        try:
            m = parse(await asyncio.to_thread(_scrape, port))
        except OSError:
            return None  # not listening yet
        up = all(m.get(("booth_device_ok", (("device", d),))) == 1.0 for d in devices)
        linked = m.get(("booth_mqtt_connected", ())) == 1.0
        scanning = m.get(("booth_scans_total", ()), 0.0) > 10
        return m if up and linked and scanning else None

    m = await wait_for(
        healthy, timeout_s=30, what="every device ok, MQTT up, scans counted", interval_s=0.2
    )
    assert m[("booth_state", (("booth_state", "stopped"),))] == 1.0  # after a start: stopped
    assert 200 < m[("booth_solder_temperature_celsius", (("vessel", "solder1"),))] < 300
    assert 0 <= m[("booth_o2_ppm", ())] < 10_000
    assert m[("booth_scan_period_seconds", ())] == pytest.approx(0.010)
    assert m[("booth_scan_lateness_seconds_count", ())] == m[("booth_scans_total", ())]
    assert ("booth_permissive", (("permissive", "door_closed"),)) in m
    assert m[("booth_outbox_events", ())] >= 0
    assert m[("booth_info", (("booth", stack.booth_id),))] == 1.0


async def test_a_failing_collector_costs_the_scrape_only(
    supervisor: FakeSupervisor, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> dict[str, Any]:
        raise RuntimeError("status exploded")

    supervisor.controller.status = broken  # type: ignore[method-assign]
    port = free_port()
    async with MetricsServer(MetricsConfig(port=port), BoothCollector(supervisor)):
        reply = await _http(port, b"GET /metrics HTTP/1.1\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 500")
    assert "metrics: collecting failed" in caplog.text
