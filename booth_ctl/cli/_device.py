"""``boothctl device read|write|check|watch``: commissioning one device, no daemon needed.

Each command talks to one device over its configured transport, through its register map, as
the supervisor would. Writes are refused while a supervisor holds the booth (its ``online`` is
retained true on the broker): two masters on one device would fight over its outputs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any

import aiomqtt

from booth_ctl.cli._common import config_opt, load
from booth_ctl.config._booth import LoadedConfig
from booth_ctl.links.mqtt._client import mqtt_client, topic_root
from drivers import (
    Device,
    DeviceDisconnected,
    DeviceError,
    DeviceTimeout,
    ModbusDevice,
    ModbusExceptionReply,
    Quality,
    Reading,
    WriteVerifyError,
    open_device,
)

EXIT_OK, EXIT_BAD, EXIT_USAGE = 0, 1, 2
#: How long ``device read`` waits for a first answer (a serial analyzer reports once a second).
READ_WAIT_S = 3.0
#: How long the broker is asked whether a supervisor holds the booth.
ONLINE_WAIT_S = 1.0
EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "device failure",
    6: "device busy",
    10: "gateway path unavailable",
    11: "gateway target failed to respond",
}


class Usage(Exception):
    """A bad argument: unknown device or point, a value that does not fit."""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``device`` and its subcommands, on ``boothctl``'s parser."""
    device = sub.add_parser("device", help="commissioning: read, write, check one device")
    dsub = device.add_subparsers(dest="device_cmd", required=True, metavar="SUBCOMMAND")
    read = dsub.add_parser("read", help="read points of one device (JSON)")
    read.add_argument("name")
    read.add_argument("points", nargs="*", metavar="POINT")
    write = dsub.add_parser("write", help="write one point, with readback")
    write.add_argument("name")
    write.add_argument("point")
    write.add_argument("value")
    check = dsub.add_parser("check", help="the device's safety settings against the config")
    check.add_argument("name")
    check.add_argument("--fix", action="store_true", help="write the config's values")
    watch = dsub.add_parser("watch", help="a live table of one device's points")
    watch.add_argument("name")
    watch.add_argument("--interval", type=float, default=0.5, help="seconds (default 0.5)")
    watch.add_argument("--count", type=int, default=0, help="stop after N tables (0: never)")
    for sp in (read, write, check, watch):
        config_opt(sp)
        sp.set_defaults(func=cmd_device)


def cmd_device(args: argparse.Namespace) -> int:
    loaded = load(args.config, "device")
    run: dict[str, Callable[[LoadedConfig, argparse.Namespace], Coroutine[Any, Any, int]]] = {
        "read": _read,
        "write": _write,
        "check": _check,
        "watch": _watch,
    }
    try:
        return asyncio.run(run[args.device_cmd](loaded, args))
    except Usage as exc:
        print(f"boothctl device {args.device_cmd}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except DeviceError as exc:
        print(f"boothctl device {args.device_cmd}: {describe(exc)}", file=sys.stderr)
        return EXIT_BAD
    except KeyboardInterrupt:
        return EXIT_OK


def _open(loaded: LoadedConfig, name: str) -> Device:
    cfg = loaded.config.devices.get(name)
    if cfg is None:
        known = ", ".join(sorted(loaded.config.devices))
        raise Usage(f"no device {name!r} in {loaded.path} (devices: {known})")
    return open_device(name, cfg, loaded.maps.get(name))


def describe(exc: DeviceError) -> str:
    """A device error with what a commissioning engineer needs: device, address, exception."""
    text = str(exc)
    if isinstance(exc, ModbusExceptionReply):
        meaning = EXCEPTION_NAMES.get(exc.code, "unknown")
        text += f" ({meaning})"
    return text


def readable(dev: Device, names: list[str]) -> list[str]:
    """The points to read: those named (checked), else every readable point of the map."""
    if not isinstance(dev, ModbusDevice):
        return names
    regmap = dev.regmap
    every = [
        n for n, p in regmap.points.items() if p.poll or (p.readback is True and not p.command)
    ] + list(regmap.bits)
    for n in names:
        if n not in regmap.points and n not in regmap.bits:
            raise Usage(f"{dev.name}: no point {n!r} in map {regmap.name!r}")
        if n not in every:
            raise Usage(f"{dev.name}: {n!r} is write-only (its effect shows elsewhere)")
    return names or every


async def _readings(dev: Device, names: list[str]) -> dict[str, Reading]:
    """One fresh reading of each point; polled points in one poll, the others one by one."""
    now = time.monotonic()
    if isinstance(dev, ModbusDevice):
        with contextlib.suppress(DeviceError):  # the poll below says what is wrong, by point
            await dev.connect(write_setup=False)
    deadline = now + READ_WAIT_S
    polled = await dev.poll()
    while not any(r.good for r in polled.values()) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        polled = await dev.poll()
    silent = bool(polled) and all(r.quality is Quality.NO_COMM for r in polled.values())
    out: dict[str, Reading] = {} if names else dict(polled)
    for n in names:
        if n in polled:
            out[n] = polled[n]
        elif silent:
            out[n] = Reading(None, now, Quality.NO_COMM)  # not asked: it would only time out
        elif isinstance(dev, ModbusDevice):
            try:
                value = await dev.read_point(n)
            except (DeviceTimeout, DeviceDisconnected):
                out[n] = Reading(None, time.monotonic(), Quality.NO_COMM)
                continue
            except DeviceError:
                out[n] = Reading(None, time.monotonic(), Quality.BAD)
                continue
            quality = Quality.GOOD if value is not None else Quality.BAD
            out[n] = Reading(value, time.monotonic(), quality)
    return out


def _row(dev: Device, name: str, r: Reading) -> dict[str, Any]:
    unit, raw = "", None
    if isinstance(dev, ModbusDevice):
        point = dev.regmap.points.get(name)
        bit = dev.regmap.bits.get(name)
        unit = point.unit if point is not None else ""
        raw = dev.raw_of(bit.word if bit is not None else name)
    value = r.value if r.quality is Quality.GOOD else None
    if isinstance(value, float):
        value = round(value, 6)
    return {"value": value, "raw": raw, "quality": r.quality.value, "unit": unit}


async def _read(loaded: LoadedConfig, args: argparse.Namespace) -> int:
    async with _open(loaded, args.name) as dev:
        names = readable(dev, list(args.points))
        readings = await _readings(dev, names)
        if not isinstance(dev, ModbusDevice):
            unknown = [n for n in names if n not in readings]
            if unknown:
                raise Usage(f"{args.name}: no point {unknown[0]!r} (points: {', '.join(readings)})")
            names = names or list(readings)
    if readings and all(r.quality is Quality.NO_COMM for r in readings.values()):
        print(f"boothctl device read: {args.name} does not answer", file=sys.stderr)
    points = {n: _row(dev, n, readings[n]) for n in names if n in readings}
    print(json.dumps({"device": args.name, "points": points}, indent=2))
    ok = len(points) == len(names) and all(p["quality"] == "good" for p in points.values())
    return EXIT_OK if ok else EXIT_BAD


def parse_value(text: str) -> float | bool:
    lowered = text.strip().lower()
    if lowered in ("true", "on"):
        return True
    if lowered in ("false", "off"):
        return False
    try:
        return float(text)
    except ValueError:
        raise Usage(f"value {text!r} is neither a number nor true/false") from None


async def supervisor_online(loaded: LoadedConfig) -> bool:
    """Whether a supervisor says it holds the booth (retained ``online`` true)."""
    topic = topic_root(loaded.config.booth_id) + "online"
    try:
        async with mqtt_client(loaded.config.mqtt) as client:
            await client.subscribe(topic, qos=1)
            async with asyncio.timeout(ONLINE_WAIT_S):
                async for message in client.messages:
                    return bool(json.loads(bytes(message.payload)))
    except (TimeoutError, aiomqtt.MqttError, OSError, ValueError):
        return False
    return False


async def _refuse_if_held(loaded: LoadedConfig, what: str) -> None:
    if await supervisor_online(loaded):
        raise Usage(
            f"refused: a supervisor holds booth {loaded.config.booth_id} (online on the "
            f"broker); stop it before you {what}"
        )


async def _write(loaded: LoadedConfig, args: argparse.Namespace) -> int:
    value = parse_value(args.value)
    await _refuse_if_held(loaded, f"write {args.name}.{args.point}")
    async with _open(loaded, args.name) as dev:
        if not isinstance(dev, ModbusDevice):
            raise Usage(f"{args.name} is not a Modbus device")
        point = args.point
        bit = dev.regmap.bits.get(point)
        if bit is not None and bit.written_by is not None:
            point = bit.written_by  # e.g. `running` through the run/stop command
        if point not in dev.regmap.points:
            raise Usage(f"{args.name}: no point {args.point!r} in map {dev.regmap.name!r}")
        if not dev.regmap.points[point].writable:
            raise Usage(f"{args.name}: {args.point!r} is read-only")
        await dev.connect(write_setup=True)
        try:
            await dev.write(point, value)
        except WriteVerifyError as exc:
            print(f"boothctl device write: {describe(exc)}", file=sys.stderr)
            return EXIT_BAD
        shown = args.point if args.point in readable(dev, []) else None
        rows = {}
        if shown is not None:
            readings = await _readings(dev, [shown])
            rows = {shown: _row(dev, shown, readings[shown])}
    print(json.dumps({"device": args.name, "written": {args.point: value}, "points": rows}))
    return EXIT_OK


async def _check(loaded: LoadedConfig, args: argparse.Namespace) -> int:
    if args.fix:
        await _refuse_if_held(loaded, f"fix {args.name}'s safety settings")
    async with _open(loaded, args.name) as dev:
        if not isinstance(dev, ModbusDevice):
            raise Usage(f"{args.name} has no safety settings to check (not a Modbus device)")
        await dev.connect(write_setup=args.fix)
        found = await dev.check_layers()
    ok = True
    for point, wanted, value in found:
        p = dev.regmap.points[point]
        match = isinstance(value, float | int) and abs(float(value) - wanted) <= (
            abs(p.scale) / 2 + 1e-9
        )
        ok = ok and match
        print(
            f"{args.name}.{point}: device {value!r} {p.unit}, config {wanted:g} {p.unit}: "
            f"{'ok' if match else 'DIFFERS'}"
        )
    if not found:
        print(f"{args.name}: no watchdog or comm-loss timeout of its own ({dev.regmap.name})")
        print(f"  covered by: {_covered_by(loaded, args.name)}")
    _print_safe_values(args.name, dev)
    return EXIT_OK if ok else EXIT_BAD


#: What ``device check`` says of the safe values, by the module's fall-back: neither kind of
#: module this project maps holds its fall-back in a register the master can read.
FALLBACK_TEXT = {
    "zero": (
        "on a watchdog trip the module sets every output to 0: its fixed behaviour, not a "
        "setting, so nothing is read back; the safe values below are what 0 means through "
        "the wiring (checked against the map at config load)"
    ),
    "safe_values": (
        "on a watchdog trip the module sets each output to the substitute value configured in "
        "the module; the map has no register to read those back, so they are NOT read back: "
        "set them in the module as declared below and prove them by a watchdog trip"
    ),
}


def _print_safe_values(name: str, dev: ModbusDevice) -> None:
    """The declared safe values, and plainly whether and why they are not read back."""
    declared = {n: p for n, p in dev.regmap.points.items() if p.safe_value is not None}
    wd = dev.regmap.watchdog
    if declared and wd is not None and wd.fallback is not None:
        ref = f" ({wd.ref})" if wd.ref else ""
        print(f"{name}: safe values: {FALLBACK_TEXT[wd.fallback]}{ref}")
    for point, p in declared.items():
        how = ""
        if wd is not None and wd.fallback == "zero":
            how = f" (raw 0{', inverted wiring' if p.invert else ''})"
        print(f"{name}.{point}: safe value {p.safe_value!r}{how}")


def _covered_by(loaded: LoadedConfig, name: str) -> str:
    cover = [
        n
        for n, d in loaded.config.devices.items()
        if d.kind == "remote_io"
        and (p := loaded.maps[n].points.get("heater_contactor")) is not None
        and p.safe_value is False
    ]
    if loaded.config.devices[name].kind != "temp_controller" or not cover:
        return "nothing"
    wd = [f"{n} {loaded.config.devices[n].watchdog_ms} ms" for n in cover]
    return f"{', '.join(cover)}: its watchdog drops heater_contactor ({', '.join(wd)})"


async def _watch(loaded: LoadedConfig, args: argparse.Namespace) -> int:
    async with _open(loaded, args.name) as dev:
        names = readable(dev, [])
        shown = 0
        while args.count <= 0 or shown < args.count:
            readings = await _readings(dev, names)
            if sys.stdout.isatty():
                print("\x1b[H\x1b[2J", end="")
            print(f"{args.name}  {time.strftime('%H:%M:%S')}")
            print(f"{'point':<22}{'value':>14} {'unit':<7}{'raw':>12}  quality")
            for n in names:
                row = _row(dev, n, readings[n])
                raw = "" if row["raw"] is None else f"{row['raw']:#x}"
                print(f"{n:<22}{row['value']!s:>14} {row['unit']:<7}{raw:>12}  {row['quality']}")
            shown += 1
            await asyncio.sleep(args.interval)
    return EXIT_OK
