"""The Prometheus endpoint: what the supervisor knows, read at scrape time.

Nothing is counted per scan: a custom collector reads the supervisor (scan statistics, the process
image, the controller's status, the MES link) when Prometheus asks. The HTTP server runs on the
event loop, like the scan, so a scrape never reads a structure while the loop changes it; one
scrape costs about a millisecond of loop time and its result is reused for ``CACHE_S``, so a
client hammering the endpoint cannot starve the scan.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    StateSetMetricFamily,
)
from prometheus_client.registry import Collector

from booth_ctl.config._booth import BoothConfig, MetricsConfig
from booth_ctl.control._image import Snapshot
from booth_ctl.control._packml import STATES
from booth_ctl.records import Records
from booth_ctl.runtime._histograms import PollTimes, lateness_histogram
from booth_ctl.runtime._linemetrics import line_metrics
from booth_ctl.runtime._scanstats import ScanStats
from drivers import LineRate, Quality, Reading

log = logging.getLogger("booth_ctl.metrics")

#: A scrape's text is served again to requests within this time (bounds the loop time spent).
CACHE_S = 0.5
#: A client gets this long to send its request line and headers.
REQUEST_TIMEOUT_S = 5.0
#: Requests larger than this are refused (a scraper sends a few hundred bytes).
MAX_REQUEST_BYTES = 8192
#: Upper bounds (seconds) of the scan-lateness histogram over the telemetry window.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Process-image points exported as readings, per device kind: (point, metric, help).
READINGS: Mapping[str, tuple[tuple[str, str, str], ...]] = {
    "remote_io": (
        ("vacuum_kpa", "booth_vacuum_kpa", "Suction-head vacuum, kPa below ambient"),
        ("n2_flow_lpm", "booth_n2_flow_lpm", "N2 flow into the booth, l/min"),
        ("flux_level_pct", "booth_flux_level_percent", "Flux vessel level, %"),
    ),
    "o2_analyzer": (("ppm", "booth_o2_ppm", "Oxygen in the booth, ppm"),),
    "holder_drive": (("z_mm", "booth_holder_z_mm", "Holder lowering distance, mm"),),
}


class SupervisorView(Protocol):
    """What the collector reads of the runtime's ``Supervisor``."""

    cfg: BoothConfig
    stats: ScanStats
    poll_times: PollTimes

    def snapshot(self, now: float) -> Snapshot: ...

    @property
    def controller(self) -> ControllerView: ...


class ControllerView(Protocol):
    def status(self) -> dict[str, Any]: ...


class LinkView(Protocol):
    connected: asyncio.Event
    connections: int


class BoothCollector(Collector):
    """Reads the supervisor when collected; ``refresh`` fetches what lives in the record store."""

    def __init__(
        self,
        supervisor: SupervisorView,
        *,
        link: LinkView | None = None,
        outbox_depth: Callable[[], Awaitable[int]] | None = None,
        devices: Callable[[], Mapping[str, object]] | None = None,
        line_rates: Callable[[], Mapping[str, LineRate]] | None = None,
    ) -> None:
        self._sup = supervisor
        self._link = link
        self._outbox_depth = outbox_depth
        self._devices = devices
        self._line_rates = line_rates
        self._outbox: int | None = None

    async def refresh(self) -> None:
        """Values that take a store query: fetched off the loop's thread, before collecting."""
        if self._outbox_depth is None:
            return
        try:
            self._outbox = await self._outbox_depth()
        except Exception as exc:
            log.warning("metrics: cannot read the event outbox: %s", exc)
            self._outbox = None

    def collect(self) -> Iterator[Metric]:
        cfg = self._sup.cfg
        booth = cfg.booth_id
        yield from self._scan()
        now = time.monotonic()
        snap = self._sup.snapshot(now)
        yield from self._readings(cfg, snap)
        yield from self._device_health(cfg, snap, now)
        yield from self._status(booth)
        if self._line_rates is not None:
            yield from line_metrics(self._line_rates())
        if self._link is not None:
            g = GaugeMetricFamily("booth_mqtt_connected", "1 while the MES link is connected")
            g.add_metric([], 1.0 if self._link.connected.is_set() else 0.0)
            yield g
            c = CounterMetricFamily("booth_mqtt_connections", "Connections made to the broker")
            c.add_metric([], float(self._link.connections))
            yield c
        if self._outbox is not None:
            g = GaugeMetricFamily(
                "booth_outbox_events", "Stored events the broker has not acknowledged yet"
            )
            g.add_metric([], float(self._outbox))
            yield g

    # ------------------------------------------------------------------ parts

    def _scan(self) -> Iterator[Metric]:
        stats = self._sup.stats
        fig = stats.figures()
        for name, value, text in (
            ("booth_scan_period_seconds", fig.period_ms, "Configured scan period"),
            ("booth_scan_lateness_p50_seconds", fig.late_p50_ms, "Median scan start lateness"),
            ("booth_scan_lateness_p99_seconds", fig.late_p99_ms, "99th percentile lateness"),
            ("booth_scan_lateness_max_seconds", fig.late_max_ms, "Worst scan start lateness"),
            ("booth_scan_duration_p99_seconds", fig.duration_p99_ms, "99th percentile duration"),
        ):
            g = GaugeMetricFamily(name, f"{text}, over the last {stats.window_s:g} s")
            g.add_metric([], value / 1000.0)
            yield g
        g = GaugeMetricFamily(
            "booth_scan_overruns_window", f"Scan overruns over the last {stats.window_s:g} s"
        )
        g.add_metric([], float(fig.overruns))
        yield g
        c = CounterMetricFamily("booth_scans", "Scans run since start")
        c.add_metric([], float(stats.total_scans))
        yield c
        c = CounterMetricFamily("booth_scan_overruns", "Scans that ended after the next deadline")
        c.add_metric([], float(stats.total_overruns))
        yield c
        yield lateness_histogram(stats)
        yield self._sup.poll_times.metric()

    def _readings(self, cfg: BoothConfig, snap: Snapshot) -> Iterator[Metric]:
        temp = GaugeMetricFamily(
            "booth_solder_temperature_celsius", "Solder temperature", labels=["vessel"]
        )
        setpoint = GaugeMetricFamily(
            "booth_solder_setpoint_celsius", "Heater controller setpoint", labels=["vessel"]
        )
        output = GaugeMetricFamily(
            "booth_heater_output_percent", "Heater controller output", labels=["vessel"]
        )
        for vessel, v in cfg.vessels.items():
            for family, point in ((temp, "pv_c"), (setpoint, "sv_c"), (output, "output_pct")):
                value = _number(snap.signals.get(f"{v.controller}.{point}"))
                if value is not None:
                    family.add_metric([vessel], value)
        yield from (temp, setpoint, output)
        for dev, dcfg in cfg.devices.items():
            for point, metric, text in READINGS.get(dcfg.kind, ()):
                value = _number(snap.signals.get(f"{dev}.{point}"))
                if value is None:
                    continue
                g = GaugeMetricFamily(metric, f"{text} (last value; see booth_device_ok)")
                g.add_metric([], value)
                yield g

    def _device_health(self, cfg: BoothConfig, snap: Snapshot, now: float) -> Iterator[Metric]:
        ok = GaugeMetricFamily(
            "booth_device_ok",
            "1 while every reading of the device is good and fresh",
            labels=["device"],
        )
        by_quality = GaugeMetricFamily(
            "booth_device_readings",
            "Readings of the device by quality",
            labels=["device", "quality"],
        )
        age = GaugeMetricFamily(
            "booth_device_reading_age_seconds",
            "Age of the device's newest good reading (staleness)",
            labels=["device"],
        )
        errors = CounterMetricFamily(
            "booth_device_errors", "Failed requests to the device since start", labels=["device"]
        )
        devices = self._devices() if self._devices is not None else {}
        for dev in cfg.devices:
            prefix = f"{dev}."
            readings = [r for k, r in snap.signals.items() if k.startswith(prefix)]
            counts = dict.fromkeys(Quality, 0)
            for r in readings:
                counts[r.quality] += 1
            for q, n in counts.items():
                by_quality.add_metric([dev, q.value], float(n))
            ok.add_metric([dev], 1.0 if readings and counts[Quality.GOOD] == len(readings) else 0.0)
            good_ts = [r.ts for r in readings if r.quality in (Quality.GOOD, Quality.STALE)]
            if good_ts:
                age.add_metric([dev], max(0.0, now - max(good_ts)))
            health = getattr(devices.get(dev), "health", None)
            failures = getattr(health, "failures", None)
            if isinstance(failures, int):
                errors.add_metric([dev], float(failures))
        yield from (ok, by_quality, age, errors)

    def _status(self, booth: str) -> Iterator[Metric]:
        status = self._sup.controller.status()
        state = str(status.get("state"))
        yield StateSetMetricFamily(
            "booth_state", "PackML state of the booth", value={s: s == state for s in STATES}
        )
        g = GaugeMetricFamily("booth_ready", "1 while the booth is idle and ready for a job")
        g.add_metric([], 1.0 if status.get("ready") else 0.0)
        yield g
        perm = GaugeMetricFamily(
            "booth_permissive", "1 while the permissive is met", labels=["permissive"]
        )
        for name, met in sorted((status.get("interlocks") or {}).items()):
            perm.add_metric([name], 1.0 if met else 0.0)
        yield perm
        alarms: list[dict[str, Any]] = list(status.get("alarms") or [])
        active = GaugeMetricFamily(
            "booth_alarms_active", "Alarms standing, by severity", labels=["severity"]
        )
        severities: dict[str, int] = {}
        for a in alarms:
            sev = str(a.get("severity"))
            severities[sev] = severities.get(sev, 0) + 1
        for sev, n in sorted(severities.items()):
            active.add_metric([sev], float(n))
        yield active
        g = GaugeMetricFamily("booth_alarms_unacked", "Alarms nobody acknowledged yet")
        g.add_metric([], float(sum(1 for a in alarms if not a.get("acked"))))
        yield g
        info = GaugeMetricFamily("booth_info", "The booth this supervisor runs", labels=["booth"])
        info.add_metric([booth], 1.0)
        yield info


def _number(reading: Reading | None) -> float | None:
    if reading is None or reading.value is None:
        return None
    return float(reading.value)


class MetricsServer:
    """``async with MetricsServer(cfg, collector)``: serves ``GET /metrics`` until the exit."""

    def __init__(self, cfg: MetricsConfig, collector: BoothCollector) -> None:
        self._cfg = cfg
        self._collector = collector
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(collector)
        self._server: asyncio.Server | None = None
        self._clients: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self._cache: tuple[float, bytes] | None = None
        self._lock = asyncio.Lock()
        #: The port actually bound (the configured one).
        self.port = cfg.port

    async def __aenter__(self) -> MetricsServer:
        self._server = await asyncio.start_server(
            self._accept, self._cfg.host, self._cfg.port, limit=MAX_REQUEST_BYTES
        )
        log.info("metrics on http://%s:%d/metrics", self._cfg.host, self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
            # Closing a client's transport ends its handler (EOF); cancelling the handler task
            # instead would make asyncio log an error for it.
            for writer in self._clients.values():
                writer.close()
            await asyncio.gather(*self._clients, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None

    async def render(self) -> bytes:
        """The exposition text (cached for ``CACHE_S``)."""
        async with self._lock:
            now = time.monotonic()
            if self._cache is not None and now - self._cache[0] < CACHE_S:
                return self._cache[1]
            await self._collector.refresh()
            body = generate_latest(self._registry)
            self._cache = (time.monotonic(), body)
            return body

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients[task] = writer
        try:
            await self._serve(reader, writer)
        except (
            TimeoutError,
            ConnectionError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
        ):
            pass  # a client that goes away or dawdles is simply dropped
        finally:
            self._clients.pop(task, None)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async with asyncio.timeout(REQUEST_TIMEOUT_S):
            head = await reader.readuntil(b"\r\n\r\n")
        parts = head.split(b"\r\n", 1)[0].split()
        if len(parts) != 3:
            await _respond(writer, 400, b"bad request\n")
            return
        method, target = parts[0], parts[1].split(b"?", 1)[0]
        if method not in (b"GET", b"HEAD"):
            await _respond(writer, 405, b"only GET\n")
            return
        if target not in (b"/metrics", b"/"):
            await _respond(writer, 404, b"see /metrics\n")
            return
        try:
            body = await self.render()
        except Exception:
            # A broken collector must cost the scrape, never the supervisor.
            log.exception("metrics: collecting failed")
            await _respond(writer, 500, b"collecting failed; see the log\n")
            return
        await _respond(writer, 200, body, CONTENT_TYPE, head_only=method == b"HEAD")


async def _respond(
    writer: asyncio.StreamWriter,
    code: int,
    body: bytes,
    content_type: str = "text/plain; charset=utf-8",
    *,
    head_only: bool = False,
) -> None:
    reason = {
        200: "OK",
        400: "Bad Request",
        404: "Not Found",
        405: "Method Not Allowed",
        500: "Internal Server Error",
    }[code]
    header = (
        f"HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    writer.write(header if head_only else header + body)
    await writer.drain()


async def outbox_depth_of(records: Records) -> int:
    """Undelivered events in the outbox: seq rises by exactly one, so last - first + 1."""
    store = records.store
    first = await records.call(store.undelivered_events, 0, 1)
    if not first:
        return 0
    last: int = await records.call(store.last_seq)
    return max(0, last - first[0].seq + 1)
