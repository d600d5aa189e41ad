"""``boothctl``: the supervisor daemon and the operator's and MES's command-line tools."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

import aiomqtt

from drivers import ConfigError

from ._client import NoReply, mqtt_client, read_status, send_command
from ._config import LoadedConfig, load_config

#: Where the installed service keeps its config; ``BOOTH_CONFIG`` or ``--config`` override it.
DEFAULT_CONFIG = "/etc/booth/booth.toml"

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2

log = logging.getLogger("booth_ctl")


def _default_config() -> str:
    return os.environ.get("BOOTH_CONFIG", DEFAULT_CONFIG)


def _load(path: str) -> LoadedConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"boothctl: invalid config: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from exc


# ---------------------------------------------------------------------------- run


def cmd_run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    loaded = _load(args.config)
    from ._daemon import run_daemon

    try:
        asyncio.run(run_daemon(loaded, _install_stop_signals))
    except KeyboardInterrupt:
        return EXIT_OK
    return EXIT_OK


def _install_stop_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


# ---------------------------------------------------------------------------- MES tools


def _mqtt_target(args: argparse.Namespace) -> LoadedConfig:
    return _load(args.config)


def cmd_send(args: argparse.Namespace) -> int:
    loaded = _mqtt_target(args)
    try:
        payload = json.loads(args.json) if args.json else {}
    except json.JSONDecodeError as exc:
        print(f"boothctl send: --json is not valid JSON: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not isinstance(payload, dict):
        print("boothctl send: --json must be a JSON object", file=sys.stderr)
        return EXIT_USAGE

    async def go() -> dict[str, Any]:
        async with mqtt_client(
            loaded.config.mqtt, username=args.username, password_file=args.password_file
        ) as client:
            return await send_command(
                client, loaded.config.booth_id, args.command, payload, args.timeout
            )

    try:
        reply = asyncio.run(go())
    except NoReply as exc:
        print(f"boothctl send: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except aiomqtt.MqttError as exc:
        mq = loaded.config.mqtt
        print(f"boothctl send: broker {mq.host}:{mq.port}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(json.dumps(reply, indent=2))
    return EXIT_OK if reply.get("ok") else EXIT_REFUSED


def cmd_status(args: argparse.Namespace) -> int:
    loaded = _mqtt_target(args)

    async def go() -> dict[str, Any]:
        async with mqtt_client(
            loaded.config.mqtt, username=args.username, password_file=args.password_file
        ) as client:
            return await read_status(client, loaded.config.booth_id, args.timeout)

    try:
        status = asyncio.run(go())
    except NoReply as exc:
        print(f"boothctl status: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except aiomqtt.MqttError as exc:
        mq = loaded.config.mqtt
        print(f"boothctl status: broker {mq.host}:{mq.port}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.pretty:
        print(format_status(status))
    else:
        print(json.dumps(status, indent=2))
    return EXIT_OK


def format_status(status: dict[str, Any]) -> str:
    """A readable table of the status: state, job, permissives, alarms."""
    lines = [
        f"state      {status.get('state')}   ready: {status.get('ready')}   "
        f"online: {status.get('online')}   mode: {status.get('mode', '-')}",
    ]
    job = status.get("job")
    if job:
        lines.append(f"job        {json.dumps(job)}")
    lines.append("interlocks")
    for name, ok in sorted((status.get("interlocks") or {}).items()):
        lines.append(f"  {'OK ' if ok else 'NOT'} {name}")
    alarms = status.get("alarms") or []
    lines.append(f"alarms     {len(alarms)}")
    for a in alarms:
        acked = "acked" if a.get("acked") else "UNACKED"
        lines.append(f"  [{a.get('severity')}] {a.get('code')}: {a.get('text')} ({acked})")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- checks


def cmd_config_check(args: argparse.Namespace) -> int:
    try:
        loaded = load_config(args.path)
    except ConfigError as exc:
        for problem in str(exc).split("; "):
            print(problem, file=sys.stderr)
        return EXIT_REFUSED
    print(
        f"{args.path}: valid (booth {loaded.config.booth_id}, {len(loaded.config.devices)} devices)"
    )
    return EXIT_OK


def cmd_recipe_check(args: argparse.Namespace) -> int:
    from ._recipe import RecipeError, load_recipe

    loaded = _load(args.config)
    try:
        load_recipe(Path(args.path), loaded.config)
    except RecipeError as exc:
        for problem in exc.problems:
            print(f"{args.path}: {problem}", file=sys.stderr)
        return EXIT_REFUSED
    print(f"{args.path}: valid")
    return EXIT_OK


# ---------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="boothctl", description="Supervisor of a solder-immersion booth, and its tools."
    )
    sub = p.add_subparsers(dest="cmd", required=True)

    run = sub.add_parser("run", help="run the supervisor daemon (what the systemd unit starts)")
    run.add_argument("--config", default=_default_config(), help="booth config TOML")
    run.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    run.set_defaults(func=cmd_run)

    def mqtt_opts(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--config", default=_default_config(), help="booth config TOML")
        sp.add_argument("--timeout", type=float, default=5.0, help="seconds to wait (default 5)")
        sp.add_argument("--username", default=None, help="MQTT user (the MES's)")
        sp.add_argument("--password-file", default=None, help="file holding the MQTT password")

    send = sub.add_parser("send", help="publish a command as the MES would and print the reply")
    send.add_argument("command", help="reset, start_job, hold, unhold, stop, abort, clear, ...")
    send.add_argument("--json", default=None, help="the command's arguments as a JSON object")
    mqtt_opts(send)
    send.set_defaults(func=cmd_send)

    status = sub.add_parser("status", help="print the booth's retained status")
    status.add_argument("--pretty", action="store_true", help="a readable table instead of JSON")
    mqtt_opts(status)
    status.set_defaults(func=cmd_status)

    config = sub.add_parser("config", help="booth config tools")
    csub = config.add_subparsers(dest="config_cmd", required=True)
    ccheck = csub.add_parser("check", help="validate a booth config and its register maps")
    ccheck.add_argument("path")
    ccheck.set_defaults(func=cmd_config_check)

    recipe = sub.add_parser("recipe", help="recipe tools")
    rsub = recipe.add_subparsers(dest="recipe_cmd", required=True)
    rcheck = rsub.add_parser("check", help="validate a recipe against a booth config")
    rcheck.add_argument("path")
    rcheck.add_argument("--config", default=_default_config(), help="booth config TOML")
    rcheck.set_defaults(func=cmd_recipe_check)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    rc: int = args.func(args)
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
