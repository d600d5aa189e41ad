"""Poll rate and latency of each shipped vendor map against its device personality.

    python bench/bench_vendor_devices.py [--seconds 5] [--hz 50]

The personalities (Omron E5CC, Watlow EZ-ZONE PM, Autonics TK4, WAGO 750-352; written from the
manuals, sim_hw/personalities) are served over Modbus TCP by a child process, so that the
server does not share the drivers' event loop. For each device, through its map, with its
set-up written at connect:

- paced: every device polled at ``--hz`` at once, each by its own task, as the supervisor does;
  latency of one ``poll()`` (all of the device's requests) and the rate achieved;
- flat out: one device at a time, polled back to back.

A vendor map costs more requests than a generic one when the manual's registers are not
consecutive (the E5CC's MV sits apart from its PV and status); the figures show how many.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import socket
import statistics
import time

from _repo import ROOT

from drivers import DeviceConfig, ModbusDevice, Quality, load_register_map
from drivers._codec import plan_reads
from drivers._modbus import ModbusLine

#: name -> (map, kind, device config extras)
DEVICES = {
    "e5cc": ("omron-e5cc", "temp_controller", {}),
    "pm": ("watlow-pm", "temp_controller", {}),
    "tk4": ("autonics-tk4", "temp_controller", {}),
    "wago": ("wago-750-352", "remote_io", {"watchdog_ms": 2000}),
}
SERVER_START_S = 10.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(ports: dict[str, int]) -> None:
    """The child: every personality on its own port, until killed."""
    from sim_hw._modbus import ModbusTcpServer
    from sim_hw.personalities import (
        AutonicsTK4,
        OmronE5CC,
        Wago750352,
        WatlowPM,
        personality_responder,
    )

    async def main() -> None:
        devs = {
            "e5cc": OmronE5CC("e5cc"),
            "pm": WatlowPM("pm"),
            "tk4": AutonicsTK4("tk4"),
            "wago": Wago750352("wago"),
        }
        for d in (devs["e5cc"], devs["pm"], devs["tk4"]):
            d.pv_c = 250.0  # type: ignore[attr-defined]
        async with contextlib.AsyncExitStack() as stack:
            for name, dev in devs.items():
                responder = personality_responder({1: dev}, tcp=True)
                await stack.enter_async_context(
                    ModbusTcpServer("127.0.0.1", ports[name], responder)
                )
            await asyncio.Event().wait()

    asyncio.run(main())


def wait_listening(port: int) -> None:
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise SystemExit(f"personality server did not listen on {port} within {SERVER_START_S} s")


def device(name: str, port: int) -> ModbusDevice:
    map_name, kind, extra = DEVICES[name]
    cfg = DeviceConfig.model_validate(
        {
            "kind": kind,
            "map": f"maps/{map_name}.toml",
            "transport": {"type": "tcp", "host": "127.0.0.1", "port": port, "unit": 1},
            "timeout_s": 0.5,
            "stale_s": 1.0,
            **extra,
        }
    )
    regmap = load_register_map(ROOT / "config" / "maps" / f"{map_name}.toml")
    return ModbusDevice(name, cfg, regmap, ModbusLine(cfg.transport), owns_line=True)  # type: ignore[arg-type]


async def run(dev: ModbusDevice, seconds: float, hz: float | None) -> list[float]:
    lat: list[float] = []
    period = 1.0 / hz if hz else 0.0
    end = time.monotonic() + seconds
    nxt = time.monotonic()
    while time.monotonic() < end:
        t0 = time.perf_counter()
        readings = await dev.poll()
        lat.append(time.perf_counter() - t0)
        if any(r.quality is not Quality.GOOD for r in readings.values()):
            bad = {n: r.quality.value for n, r in readings.items() if r.quality is not Quality.GOOD}
            raise SystemExit(f"{dev.name}: not all good: {bad}")
        if period:
            nxt += period
            await asyncio.sleep(max(0.0, nxt - time.monotonic()))
    return lat


def line(name: str, lat: list[float], seconds: float, requests: int) -> str:
    ms = sorted(x * 1000 for x in lat)
    p99 = ms[min(len(ms) - 1, int(0.99 * len(ms)))]
    return (
        f"{name:<7}{DEVICES[name][0]:<15}{requests:>5}{len(lat) / seconds:>9.1f}"
        f"{statistics.median(ms):>9.2f}{p99:>9.2f}{ms[-1]:>9.2f}"
    )


async def bench(ports: dict[str, int], seconds: float, hz: float) -> None:
    devs = {n: device(n, p) for n, p in ports.items()}
    header = f"{'device':<7}{'map':<15}{'reqs':>5}{'Hz':>9}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}"
    try:
        for d in devs.values():
            await d.poll()  # connect and set-up, not measured
        print(f"paced at {hz:g} Hz, all devices at once, {seconds:g} s")
        print(header)
        results = await asyncio.gather(*(run(d, seconds, hz) for d in devs.values()))
        for (name, d), lat in zip(devs.items(), results, strict=True):
            print(line(name, lat, seconds, len(plan_reads(d.regmap))))
        print(f"\nflat out, one device at a time, {seconds:g} s each")
        print(header)
        for name, d in devs.items():
            lat = await run(d, seconds, None)
            print(line(name, lat, seconds, len(plan_reads(d.regmap))))
    finally:
        for d in devs.values():
            await d.__aexit__(None, None, None)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--hz", type=float, default=50.0)
    args = ap.parse_args()
    ports = {n: free_port() for n in DEVICES}
    child = multiprocessing.get_context("spawn").Process(target=serve, args=(ports,), daemon=True)
    child.start()
    try:
        for p in ports.values():
            wait_listening(p)
        asyncio.run(bench(ports, args.seconds, args.hz))
    finally:
        child.terminate()
        child.join(5.0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
