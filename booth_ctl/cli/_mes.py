"""The MES's tools: ``boothctl send``, ``boothctl status`` and ``boothctl watch``."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import aiomqtt
from pydantic import ValidationError

from booth_ctl.cli._common import (
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_USAGE,
    TELEMETRY_WAITS,
    mqtt_opts,
)
from booth_ctl.commands import COMMANDS
from booth_ctl.config._booth import BoothConfig, LoadedConfig
from booth_ctl.links.mqtt import NoReply, mqtt_client, read_status, send_command
from drivers import TomlError, read_toml
from drivers._booth_file import validation_lines


def _mqtt_target(args: argparse.Namespace) -> LoadedConfig:
    """The booth config as an MQTT client needs it: its register maps are not read, so that
    ``send``, ``status`` and ``watch`` work from a PC that has only the booth's TOML."""
    path = Path(args.config)
    try:
        data = read_toml(path)
        cfg = BoothConfig.model_validate(data)
    except OSError as exc:
        print(f"boothctl: invalid config: {path}: cannot read: {exc.strerror}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from exc
    except TomlError as exc:
        print(f"boothctl: invalid config: {path}: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from exc
    except ValidationError as exc:
        problems = "; ".join(validation_lines(exc))
        print(f"boothctl: invalid config: {path}: {problems}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from exc
    return LoadedConfig(path, cfg, {})


def _client_opts(loaded: LoadedConfig, args: argparse.Namespace) -> dict[str, Any]:
    """How the CLI logs in: its own user and, where the broker speaks TLS, the booth's CA to
    check the broker by and the operator's own certificate, if the broker asks for one."""
    mq = loaded.config.mqtt
    tls = None
    if mq.tls_ca or args.tls_cert:
        tls = aiomqtt.TLSParameters(
            ca_certs=str(loaded.resolve(mq.tls_ca)) if mq.tls_ca else None,
            certfile=args.tls_cert,
            keyfile=args.tls_key,
        )
    return {"username": args.username, "password_file": args.password_file, "tls": tls}


def _as_client(
    cmd: str, loaded: LoadedConfig, go: Callable[[], Coroutine[Any, Any, dict[str, Any]]]
) -> dict[str, Any] | None:
    """Run ``go`` (a client of the broker); None, with the reason on stderr, if it failed."""
    try:
        return asyncio.run(go())
    except NoReply as exc:
        print(f"boothctl {cmd}: {exc}", file=sys.stderr)
    except aiomqtt.MqttError as exc:
        mq = loaded.config.mqtt
        print(f"boothctl {cmd}: broker {mq.host}:{mq.port}: {exc}", file=sys.stderr)
    except (OSError, ValueError) as exc:
        print(f"boothctl {cmd}: {exc}", file=sys.stderr)
    return None


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
        async with mqtt_client(loaded.config.mqtt, **_client_opts(loaded, args)) as client:
            return await send_command(
                client, loaded.config.booth_id, args.command, payload, args.timeout
            )

    reply = _as_client("send", loaded, go)
    if reply is None:
        return EXIT_USAGE
    print(json.dumps(reply, indent=2))
    return EXIT_OK if reply.get("ok") else EXIT_REFUSED


def cmd_status(args: argparse.Namespace) -> int:
    loaded = _mqtt_target(args)

    async def go() -> dict[str, Any]:
        async with mqtt_client(loaded.config.mqtt, **_client_opts(loaded, args)) as client:
            status = await read_status(client, loaded.config.booth_id, args.timeout)
            if args.pretty and status.get("online"):
                # Readings are not in the status: wait for the next telemetry message.
                wait_s = min(args.timeout, TELEMETRY_WAITS * loaded.config.telemetry.period_s)
                status["telemetry"] = await _next_telemetry(client, loaded.config.booth_id, wait_s)
            return status

    status = _as_client("status", loaded, go)
    if status is None:
        return EXIT_USAGE
    if args.pretty:
        print(format_status(status))
    else:
        print(json.dumps(status, indent=2))
    return EXIT_OK


async def _next_telemetry(
    client: aiomqtt.Client, booth_id: str, timeout_s: float
) -> dict[str, Any] | None:
    topic = f"booth/{booth_id}/telemetry"
    await client.subscribe(topic, qos=0)
    try:
        async with asyncio.timeout(timeout_s):
            async for message in client.messages:
                if not message.topic.matches(topic):
                    continue
                try:
                    body = json.loads(bytes(message.payload))
                except (TypeError, ValueError):
                    continue
                if isinstance(body, dict):
                    return body
    except TimeoutError:
        pass
    return None


def format_status(status: dict[str, Any]) -> str:
    """A readable table of the status: state, job, permissives, alarms, readings."""
    lines = [
        f"state      {status.get('state')}   ready: {status.get('ready')}   "
        f"online: {status.get('online')}   mode: {status.get('mode', '-')}",
    ]
    job = status.get("job")
    if job:
        lines.append(
            f"job        {job.get('lot_id')}  recipe {job.get('recipe')}  "
            f"unit {job.get('unit')} of {job.get('units')}  (done {job.get('units_done')}, "
            f"rejected {job.get('units_rejected')})  step {job.get('step')}"
        )
    lines.append("interlocks")
    for name, ok in sorted((status.get("interlocks") or {}).items()):
        lines.append(f"  {'OK ' if ok else 'NOT'} {name}")
    alarms = status.get("alarms") or []
    lines.append(f"alarms     {len(alarms)}")
    for a in alarms:
        acked = "acked" if a.get("acked") else "UNACKED"
        lines.append(f"  [{a.get('severity')}] {a.get('code')}: {a.get('text')} ({acked})")
    if "telemetry" in status:
        from booth_ctl.cli._watch import READINGS

        tel = status["telemetry"]
        if tel is None:
            lines.append("readings   (no telemetry within the timeout)")
        else:
            lines.append("readings")
            for key, label, fmt in READINGS:
                value = tel.get(key)
                shown = fmt.format(value) if isinstance(value, int | float) else f"{'-':>8}"
                lines.append(f"  {label} {shown}")
            for key, label in (("door_closed", "door closed"), ("estop_ok", "e-stop clear")):
                value = tel.get(key)
                word = "yes" if value is True else "no" if value is False else "-"
                lines.append(f"  {label:<20} {word:>8}")
    return "\n".join(lines)


def cmd_watch(args: argparse.Namespace) -> int:
    from booth_ctl.cli._watch import Watcher, watch_live, watch_once

    loaded = _mqtt_target(args)
    mq = loaded.config.mqtt
    root = f"booth/{loaded.config.booth_id}/"
    watcher = Watcher(mq, loaded.config.booth_id, **_client_opts(loaded, args))
    color = args.color == "always" or (args.color == "auto" and sys.stdout.isatty())

    def describe(exc: BaseException) -> str:
        return f"broker {mq.host}:{mq.port}: {exc}"

    try:
        if args.once:
            if not asyncio.run(watch_once(watcher, args.timeout, sys.stdout, color=color)):
                print(
                    f"boothctl watch: no retained status on {root}status within {args.timeout} s",
                    file=sys.stderr,
                )
                return EXIT_USAGE
            return EXIT_OK
        asyncio.run(watch_live(watcher, sys.stdout, color=color, describe_error=describe))
    except KeyboardInterrupt:
        return EXIT_OK
    except aiomqtt.MqttError as exc:
        print(f"boothctl watch: {describe(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"boothctl watch: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    send = sub.add_parser(
        "send",
        help="publish a command as the MES would and print the reply",
        description="Publish cmd/COMMAND, wait for its reply and print it as JSON. "
        "Exit 0 if ok, 1 if refused, 2 on no reply or a usage error.",
    )
    send.add_argument("command", help=", ".join(COMMANDS))
    send.add_argument(
        "--json",
        default=None,
        help="the command's arguments as a JSON object, e.g. '{\"lot_id\": ...}'",
    )
    mqtt_opts(send)
    send.set_defaults(func=cmd_send)

    status = sub.add_parser("status", help="print the booth's retained status")
    status.add_argument("--pretty", action="store_true", help="a readable table instead of JSON")
    mqtt_opts(status)
    status.set_defaults(func=cmd_status)

    watch = sub.add_parser(
        "watch",
        help="live view of the booth for the operator (Ctrl-C exits)",
        description="State, permissives, alarms and readings with short trends, redrawn as "
        "status and telemetry arrive over MQTT. Read-only: it never commands the booth.",
    )
    watch.add_argument("--once", action="store_true", help="print one frame and exit")
    watch.add_argument(
        "--color", choices=["auto", "always", "never"], default="auto", help="ANSI colours"
    )
    mqtt_opts(watch)
    watch.set_defaults(func=cmd_watch)
