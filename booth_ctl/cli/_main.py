"""``boothctl``: the supervisor daemon and the operator's and MES's command-line tools."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import io
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

import aiomqtt
import uvloop
from pydantic import ValidationError

from booth_ctl.config._booth import BoothConfig, LoadedConfig, load_config
from booth_ctl.links.mqtt._client import NoReply, mqtt_client, read_status, send_command
from booth_ctl.records._store import RecordError, RecordStore
from drivers import ConfigError, RegisterMap, TomlError, read_toml

#: Where the installed service keeps its config; ``BOOTH_CONFIG`` or ``--config`` override it.
DEFAULT_CONFIG = "/etc/booth/booth.toml"

EXIT_OK = 0
#: A refused command, an invalid file, a lot without records.
EXIT_REFUSED = 1
#: No reply, no broker, a bad argument or an unusable config.
EXIT_USAGE = 2
#: Syslog priorities of the log levels, for journald (stderr lines prefixed ``<N>``).
SYSLOG_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}

#: ``status --pretty`` waits at most this many telemetry periods for a reading.
TELEMETRY_WAITS = 2.5

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


class OneLineFormatter(logging.Formatter):
    """One line per record, whatever it carries (a traceback becomes `` | ``-joined).

    Under systemd (stderr is the journal's stream) each line starts with its syslog priority
    ``<N>``, so that ``journalctl -p warning`` filters by level; elsewhere the level is written out.
    """

    def __init__(self, journal: bool) -> None:
        super().__init__("%(levelname)s %(name)s: %(message)s")
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record).replace("\r", "").replace("\n", " | ")
        if self.journal:
            return f"<{SYSLOG_PRIORITY.get(record.levelno, 6)}>{text}"
        return text


def stderr_is_journal() -> bool:
    """Whether stderr is connected to journald (systemd sets ``JOURNAL_STREAM=dev:inode``)."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    dev, _, ino = stream.partition(":")
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError):
        return False
    return bool(ino) and f"{st.st_dev}:{st.st_ino}" == f"{dev}:{ino}"


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLineFormatter(stderr_is_journal()))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper()))


def cmd_run(args: argparse.Namespace) -> int:
    setup_logging(args.log_level)
    loaded = _load(args.config)
    from booth_ctl.runtime._daemon import run_daemon

    try:
        # libuv's loop costs about a fifth less CPU per Modbus request and per scan tick than
        # the stock one (docs/performance.md); the supervisor relies on nothing else of it.
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(run_daemon(loaded, _install_stop_signals))
    except KeyboardInterrupt:
        return EXIT_OK
    except (ConfigError, RecordError, OSError) as exc:
        # A setting the daemon cannot live with (store not writable, password file unreadable):
        # one line naming it, and a failure exit so that systemd's start limit applies.
        log.critical("cannot run: %s", exc)
        return EXIT_REFUSED
    except BaseExceptionGroup as group:
        for leaf in _leaves(group):
            log.critical("cannot run: %s", leaf, exc_info=leaf)
        return EXIT_REFUSED
    return EXIT_OK


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for e in exc.exceptions for leaf in _leaves(e)]
    return [exc]


def _install_stop_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


# ---------------------------------------------------------------------------- MES tools


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
        problems = "; ".join(_validation_lines(exc))
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

    try:
        reply = asyncio.run(go())
    except NoReply as exc:
        print(f"boothctl send: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except aiomqtt.MqttError as exc:
        mq = loaded.config.mqtt
        print(f"boothctl send: broker {mq.host}:{mq.port}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"boothctl send: {exc}", file=sys.stderr)
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

    try:
        status = asyncio.run(go())
    except NoReply as exc:
        print(f"boothctl status: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except aiomqtt.MqttError as exc:
        mq = loaded.config.mqtt
        print(f"boothctl status: broker {mq.host}:{mq.port}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (OSError, ValueError) as exc:
        print(f"boothctl status: {exc}", file=sys.stderr)
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


# ---------------------------------------------------------------------------- checks


def config_problems(path: Path) -> tuple[BoothConfig | None, list[str]]:
    """Every problem of a booth config and of the register maps it names, one line each.

    Each line starts with the file it is about and names the field (``devices.io.transport.port``)
    or, for TOML syntax, the line and column.
    """
    try:
        data = read_toml(path)
    except OSError as exc:
        return None, [f"{path}: cannot read: {exc.strerror}"]
    except TomlError as exc:
        return None, [f"{path}: {exc}"]
    try:
        cfg = BoothConfig.model_validate(data)
    except ValidationError as exc:
        return None, [f"{path}: {line}" for line in _validation_lines(exc)]
    problems: list[str] = []
    for name, dev in cfg.devices.items():
        if dev.map is None:
            continue
        map_path = Path(dev.map) if Path(dev.map).is_absolute() else path.parent / dev.map
        where = f"{path}: devices.{name}.map"
        try:
            map_data = read_toml(map_path)
        except OSError as exc:
            problems.append(f"{where}: cannot read {map_path}: {exc.strerror}")
            continue
        except TomlError as exc:
            problems.append(f"{map_path}: {exc}")
            continue
        try:
            RegisterMap.model_validate(map_data)
        except ValidationError as exc:
            problems.extend(f"{map_path}: {line}" for line in _validation_lines(exc))
    return cfg, problems


def _validation_lines(exc: ValidationError) -> list[str]:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top)"
        msg = str(err["msg"]).removeprefix("Value error, ")
        # A cross-field rule names its own fields in its message.
        lines.append(msg if loc == "(top)" and ": " in msg else f"{loc}: {msg}")
    return lines


def cmd_config_check(args: argparse.Namespace) -> int:
    path = Path(args.path)
    cfg, problems = config_problems(path)
    if problems or cfg is None:
        for problem in problems:
            print(problem, file=sys.stderr)
        return EXIT_REFUSED
    print(f"{path}: valid (booth {cfg.booth_id}, {len(cfg.devices)} devices)")
    return EXIT_OK


def cmd_recipe_check(args: argparse.Namespace) -> int:
    from booth_ctl.config._recipe import RecipeError, load_recipe

    booths = _booths_for_recipe(args)
    failed = False
    for loaded in booths:
        try:
            load_recipe(Path(args.path), loaded.config)
        except RecipeError as exc:
            failed = True
            where = f" (booth {loaded.config.booth_id}, {loaded.path})" if len(booths) > 1 else ""
            for problem in exc.problems:
                print(f"{args.path}: {problem}{where}", file=sys.stderr)
    if failed:
        return EXIT_REFUSED
    names = ", ".join(b.config.booth_id for b in booths)
    print(f"{args.path}: valid (for booth{'s' if len(booths) > 1 else ''} {names})")
    return EXIT_OK


def _booths_for_recipe(args: argparse.Namespace) -> list[LoadedConfig]:
    """The booth configs a recipe is checked against.

    A config named by ``--config`` or ``$BOOTH_CONFIG``, or the installed one, when it exists.
    Otherwise (a recipe in a project folder on an engineer's PC) every booth config beside the
    recipe folder that takes its recipes from that folder: the recipe must suit each of them.
    """
    if args.config is not None or os.environ.get("BOOTH_CONFIG") or Path(DEFAULT_CONFIG).exists():
        return [_load(args.config or _default_config())]
    folder = Path(args.path).resolve().parent
    found = []
    for candidate in sorted(folder.parent.glob("*.toml")):
        try:
            loaded = load_config(candidate)
        except ConfigError:
            continue
        if loaded.resolve(loaded.config.records.recipes_dir).resolve() == folder:
            found.append(loaded)
    if not found:
        print(
            f"boothctl: no booth config to check {args.path} against: give --config "
            f"(or $BOOTH_CONFIG; {DEFAULT_CONFIG} does not exist, and no booth config in "
            f"{folder.parent} takes its recipes from {folder})",
            file=sys.stderr,
        )
        raise SystemExit(EXIT_USAGE)
    return found


# ---------------------------------------------------------------------------- records and mode


def _open_store(loaded: LoadedConfig, cmd: str) -> RecordStore:
    """The configured record store, which must exist already (the supervisor creates it)."""
    path = loaded.resolve(loaded.config.records.path)
    if not path.exists():
        print(
            f"boothctl {cmd}: records.path {path}: no record store there "
            f"(has the supervisor run with {loaded.path}?)",
            file=sys.stderr,
        )
        raise SystemExit(EXIT_USAGE)
    try:
        return RecordStore(path, request_id_keep_s=loaded.config.mqtt.request_id_keep_s)
    except (RecordError, OSError) as exc:
        print(f"boothctl {cmd}: records.path {path}: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from exc


def _operator() -> str:
    """Who switched the mode, for the audit trail: the person behind sudo if any."""
    try:
        user = os.environ.get("SUDO_USER") or getpass.getuser()
    except (KeyError, OSError):
        user = f"uid{os.getuid()}"
    return f"boothctl:{user}"


def cmd_mode(args: argparse.Namespace) -> int:
    loaded = _load(args.config)
    store = _open_store(loaded, "mode")
    with store:
        before = store.get_mode()
        if args.mode is None:
            print(before)
            return EXIT_OK
        store.set_mode(args.mode, _operator())
        after = store.get_mode()
    change = "unchanged" if before == after else f"was {before}"
    print(f"{after} ({change}; the supervisor applies it within a second)")
    return EXIT_OK


def cmd_records_export(args: argparse.Namespace) -> int:
    loaded = _load(args.config)
    store = _open_store(loaded, "records export")
    buf = io.StringIO()
    with store:
        rows = store.export_lot_csv(args.lot, buf)
    if rows == 0:
        print(f"boothctl records export: lot {args.lot!r}: no job on record", file=sys.stderr)
        return EXIT_REFUSED
    if args.out in (None, "-"):
        sys.stdout.write(buf.getvalue())
        return EXIT_OK
    out = Path(args.out)
    try:
        out.write_text(buf.getvalue(), encoding="utf-8")
    except OSError as exc:
        print(f"boothctl records export: --out {out}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    print(f"{out}: {rows} rows of lot {args.lot}", file=sys.stderr)
    return EXIT_OK


# ---------------------------------------------------------------------------- watch


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


# ---------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="boothctl",
        description="Supervisor of a solder-immersion booth, and its tools.",
        epilog=f"--config defaults to $BOOTH_CONFIG or {DEFAULT_CONFIG}.",
    )
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    def config_opt(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--config",
            default=_default_config(),
            help=f"booth config TOML (default: $BOOTH_CONFIG or {DEFAULT_CONFIG})",
        )

    def mqtt_opts(sp: argparse.ArgumentParser) -> None:
        config_opt(sp)
        sp.add_argument("--timeout", type=float, default=5.0, help="seconds to wait (default 5)")
        sp.add_argument("--username", default=None, help="MQTT user (the MES's)")
        sp.add_argument("--password-file", default=None, help="file holding the MQTT password")
        sp.add_argument(
            "--tls-cert", default=None, help="client certificate, if the broker asks for one"
        )
        sp.add_argument("--tls-key", default=None, help="the key of --tls-cert")

    run = sub.add_parser("run", help="run the supervisor daemon (what the systemd unit starts)")
    config_opt(run)
    run.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    run.set_defaults(func=cmd_run)

    send = sub.add_parser(
        "send",
        help="publish a command as the MES would and print the reply",
        description="Publish cmd/COMMAND, wait for its reply and print it as JSON. "
        "Exit 0 if ok, 1 if refused, 2 on no reply or a usage error.",
    )
    send.add_argument(
        "command",
        help="reset, start_job, hold, unhold, stop, abort, clear, ack_alarm, get_status, "
        "put_recipe, get_recipe, list_recipes, get_job, refresh",
    )
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

    mode = sub.add_parser(
        "mode",
        help="show or switch the control mode (remote: the MES runs the booth; local: not)",
        description="In local mode the booth refuses the MES's commands that change anything "
        "(reads are still answered). Without an argument, print the current mode. Writes the "
        "record store, so run it as the service's user (or root).",
    )
    mode.add_argument("mode", nargs="?", choices=["local", "remote"], help="the new mode")
    config_opt(mode)
    mode.set_defaults(func=cmd_mode)

    records = sub.add_parser("records", help="lot records")
    rsub_ = records.add_subparsers(dest="records_cmd", required=True, metavar="SUBCOMMAND")
    export = rsub_.add_parser(
        "export",
        help="a lot's units and dips as CSV",
        description="Every dip of every job of a lot (O2 and temperature at entry, depth, "
        "dwell, times) as CSV; exit 1 if the lot has no job on record.",
    )
    export.add_argument("--lot", required=True, help="the lot id")
    export.add_argument("--out", default=None, help="write to this file (default: stdout)")
    config_opt(export)
    export.set_defaults(func=cmd_records_export)

    config = sub.add_parser("config", help="booth config tools")
    csub = config.add_subparsers(dest="config_cmd", required=True, metavar="SUBCOMMAND")
    ccheck = csub.add_parser(
        "check",
        help="validate a booth config and its register maps",
        description="Print every problem with its file and field; exit 0 only if valid.",
    )
    ccheck.add_argument("path", help="booth config TOML")
    ccheck.set_defaults(func=cmd_config_check)

    recipe = sub.add_parser("recipe", help="recipe tools")
    rsub = recipe.add_subparsers(dest="recipe_cmd", required=True, metavar="SUBCOMMAND")
    rcheck = rsub.add_parser(
        "check",
        help="validate a recipe against a booth config",
        description="Print every problem with its file and field; exit 0 only if valid.",
    )
    rcheck.add_argument("path", help="recipe TOML")
    rcheck.add_argument(
        "--config",
        default=None,
        help=f"booth config TOML (default: $BOOTH_CONFIG, else {DEFAULT_CONFIG} if it exists, "
        "else every booth config beside the recipe's folder that takes its recipes from it)",
    )
    rcheck.set_defaults(func=cmd_recipe_check)
    from booth_ctl.cli._user import add_user_parser

    add_user_parser(sub, config_opt)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    rc: int = args.func(args)
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
