"""Poll rate and latency of every device driver against the simulated booth.

    python bench/bench_drivers.py [--seconds 5] [--hz 50]

The simulator runs as its own process (``booth-sim``), as it does beside the supervisor. Two
layouts of the sample booth are measured: the shipped one (temperature controller on Modbus RTU
over a pseudo-terminal, I/O module and holder on Modbus TCP) and one with every Modbus device on
TCP. For each, two runs:

- paced: every device polled at ``--hz`` at once, each by its own task, as the supervisor does;
  latency of one ``poll()`` (all of the device's requests) and the rate achieved;
- flat out: one device at a time, polled back to back: the most one link can give.

Goal: every device at >= 50 Hz with p99 <= 5 ms over TCP on loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

import tomli_w

from drivers import (
    DeviceConfig,
    DeviceSet,
    Quality,
    RegisterMap,
    TcpTransport,
    load_register_map,
)
from drivers._codec import plan_reads

FC_READ = {"coil": 1, "discrete": 2, "holding": 3, "input": 4}

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "config" / "booth-sim.toml"
SIM_START_TIMEOUT_S = 15.0
SIM_STOP_TIMEOUT_S = 5.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def render(run: Path, *, all_tcp: bool) -> Path:
    """The sample config with free ports and every path under ``run``."""
    data = tomllib.loads(CONFIG.read_text(encoding="utf-8"))
    data["mqtt"]["port"] = free_port()
    data["records"]["path"] = str(run / "records.sqlite3")
    data["records"]["recipes_dir"] = str(CONFIG.parent / data["records"]["recipes_dir"])
    for dev in data["devices"].values():
        if "map" in dev:
            dev["map"] = str(CONFIG.parent / dev["map"])
        tr = dev["transport"]
        if tr["type"] == "rtu" and all_tcp:
            dev["transport"] = {"type": "tcp", "host": "127.0.0.1", "port": free_port(), "unit": 1}
        elif tr["type"] == "tcp":
            tr["port"] = free_port()
        else:
            tr["port"] = str(run / Path(tr["port"]).name)
    data["sim"]["control_socket"] = str(run / "sim.sock")
    path = run / ("booth-tcp.toml" if all_tcp else "booth.toml")
    path.write_text(tomli_w.dumps(data), encoding="utf-8")
    return path


def load(path: Path) -> tuple[dict[str, DeviceConfig], dict[str, RegisterMap]]:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    devices = {n: DeviceConfig.model_validate(d) for n, d in data["devices"].items()}
    maps = {n: load_register_map(Path(d.map)) for n, d in devices.items() if d.map}
    return devices, maps


def start_sim(config: Path) -> subprocess.Popen[bytes]:
    exe = Path(sys.executable).with_name("booth-sim")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "sim_hw.cli"]
    return subprocess.Popen(
        [*cmd, "--config", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def stop_sim(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(SIM_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def wait_good(dset: DeviceSet, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + SIM_START_TIMEOUT_S
    while True:
        bad = []
        for name, dev in dset.devices.items():
            readings = await dev.poll()
            if not all(r.quality is Quality.GOOD for r in readings.values()):
                bad.append(name)
        if not bad:
            return
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise SystemExit(f"booth-sim exited with {proc.returncode}: {err}")
        if time.monotonic() > deadline:
            raise SystemExit(f"devices not GOOD within {SIM_START_TIMEOUT_S} s: {bad}")
        await asyncio.sleep(0.05)


def summary(lat_s: list[float], seconds: float, bad: int) -> dict[str, float]:
    ms = sorted(x * 1000 for x in lat_s)
    n = len(ms)
    return {
        "rate_hz": n / seconds,
        "p50_ms": statistics.median(ms) if ms else float("nan"),
        "p99_ms": ms[min(n - 1, int(0.99 * n))] if ms else float("nan"),
        "max_ms": ms[-1] if ms else float("nan"),
        "polls": n,
        "not_good": bad,
    }


async def paced(dev: Any, hz: float, seconds: float, phase: float = 0.0) -> dict[str, float]:
    """Poll at ``hz`` against absolute deadlines, as the supervisor's pollers do.

    ``phase`` (0..1 of a period) delays this poller's ticks against the others'.
    """
    period = 1.0 / hz
    lat: list[float] = []
    bad = 0
    await asyncio.sleep(phase * period)
    start = time.monotonic()
    next_t = start
    while time.monotonic() - start < seconds:
        t0 = time.perf_counter()
        readings = await dev.poll()
        lat.append(time.perf_counter() - t0)
        bad += any(r.quality is not Quality.GOOD for r in readings.values())
        next_t += period
        await asyncio.sleep(max(0.0, next_t - time.monotonic()))
    return summary(lat, time.monotonic() - start, bad)


async def flat_out(dev: Any, seconds: float) -> dict[str, float]:
    lat: list[float] = []
    bad = 0
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        t0 = time.perf_counter()
        readings = await dev.poll()
        lat.append(time.perf_counter() - t0)
        bad += any(r.quality is not Quality.GOOD for r in readings.values())
    return summary(lat, time.monotonic() - start, bad)


def transport_of(cfg: DeviceConfig) -> str:
    return cfg.transport.type


def show(title: str, rows: dict[str, dict[str, float]], devices: dict[str, DeviceConfig]) -> None:
    print(f"\n{title}")
    print(
        f"  {'device':<9} {'link':<6} {'rate Hz':>8} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'max ms':>7} {'polls':>6} {'not good':>8}"
    )
    for name, r in rows.items():
        print(
            f"  {name:<9} {transport_of(devices[name]):<6} {r['rate_hz']:>8.1f} "
            f"{r['p50_ms']:>7.2f} {r['p99_ms']:>7.2f} {r['max_ms']:>7.2f} "
            f"{int(r['polls']):>6} {int(r['not_good']):>8}"
        )


async def o2_rate(dev: Any, seconds: float) -> dict[str, float]:
    """The analyzer pushes lines at its own period: count them."""
    before = dev.good_lines
    await asyncio.sleep(seconds)
    return {"lines_hz": (dev.good_lines - before) / seconds, "bad_lines": dev.bad_lines}


async def raw_floor(
    cfg: DeviceConfig, regmap: RegisterMap, hz: float, seconds: float
) -> dict[str, float]:
    """The same requests from a bare socket with hand-made frames: what the machine and the
    simulator give without any driver, to judge the drivers' own share (TCP devices only)."""
    tr = cfg.transport
    assert isinstance(tr, TcpTransport)
    reader, writer = await asyncio.open_connection(tr.host, tr.port)
    frames = [
        struct.pack(">HHHBBHH", 1, 0, 6, tr.unit, FC_READ[b.table], b.address, b.count)
        for b in plan_reads(regmap)
    ]
    lat: list[float] = []
    period = 1.0 / hz
    start = time.monotonic()
    next_t = start
    try:
        while time.monotonic() - start < seconds:
            t0 = time.perf_counter()
            for frame in frames:
                writer.write(frame)
                header = await reader.readexactly(7)
                await reader.readexactly(struct.unpack(">H", header[4:6])[0] - 1)
            lat.append(time.perf_counter() - t0)
            next_t += period
            await asyncio.sleep(max(0.0, next_t - time.monotonic()))
    finally:
        writer.close()
        await writer.wait_closed()
    return summary(lat, time.monotonic() - start, 0)


async def bench(config: Path, hz: float, seconds: float, title: str) -> bool:
    devices, maps = load(config)
    proc = start_sim(config)
    try:
        async with DeviceSet(devices, maps) as dset:
            await wait_good(dset, proc)
            modbus = {n: d for n, d in dset.devices.items() if devices[n].map is not None}
            o2 = [d for n, d in dset.devices.items() if devices[n].map is None]
            results = await asyncio.gather(
                *(paced(d, hz, seconds) for d in modbus.values()),
                *(o2_rate(d, seconds) for d in o2),
            )
            aligned = dict(zip(modbus, results[: len(modbus)], strict=True))
            show(
                f"{title}: every device at {hz:g} Hz, ticks aligned, {seconds:g} s",
                aligned,
                devices,
            )
            for d, r in zip(o2, results[len(modbus) :], strict=True):
                print(
                    f"  {d.name:<9} serial {r['lines_hz']:>8.1f} lines/s "
                    f"(the analyzer's own period), bad lines {int(r['bad_lines'])}"
                )
            n = len(modbus)
            staggered_list = await asyncio.gather(
                *(paced(d, hz, seconds, phase=i / n) for i, d in enumerate(modbus.values()))
            )
            staggered = dict(zip(modbus, staggered_list, strict=True))
            show(
                f"{title}: every device at {hz:g} Hz, ticks staggered by 1/{n} period",
                staggered,
                devices,
            )
            flat = {name: await flat_out(d, seconds / 2) for name, d in modbus.items()}
            show(f"{title}: one device at a time, back to back, {seconds / 2:g} s", flat, devices)
            tcp = [name for name in modbus if devices[name].transport.type == "tcp"]
            floor_list = await asyncio.gather(
                *(raw_floor(devices[name], maps[name], hz, seconds) for name in tcp)
            )
            floor = dict(zip(tcp, floor_list, strict=True))
            show(f"{title}: floor, bare sockets, same requests, ticks aligned", floor, devices)
    finally:
        stop_sim(proc)
    return all(
        r["rate_hz"] >= 0.95 * hz and r["p99_ms"] <= 5.0 and r["not_good"] == 0
        for name, r in staggered.items()
        if devices[name].transport.type == "tcp"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each paced run")
    parser.add_argument("--hz", type=float, default=50.0, help="poll rate of the paced run")
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, pid {os.getpid()}")
    with tempfile.TemporaryDirectory(prefix="bench-drivers-") as tmp:
        run = Path(tmp)
        ok = True
        for all_tcp, title in ((False, "shipped layout"), (True, "all Modbus on TCP")):
            sub = run / ("tcp" if all_tcp else "shipped")
            sub.mkdir()
            ok &= asyncio.run(bench(render(sub, all_tcp=all_tcp), args.hz, args.seconds, title))
    verdict = "met" if ok else "NOT met"
    print(f"\ngoal (TCP devices >= {args.hz:g} Hz, p99 <= 5 ms, all GOOD, staggered): {verdict}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
