"""What every ``boothctl`` command shares: exit codes, the config it loads, the record store it
opens, who runs it, and the argument shapes."""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import sys

from booth_ctl.commands import Role
from booth_ctl.config._booth import LoadedConfig, load_config
from booth_ctl.records import RecordError, RecordStore
from drivers import ConfigError

#: Where the installed service keeps its config; ``BOOTH_CONFIG`` or ``--config`` override it.
DEFAULT_CONFIG = "/etc/booth/booth.toml"

#: The role of a person using boothctl at the booth PC: there is no login to tell people apart,
#: and whoever can run it there can read the config and the record store anyway.
CLI_ROLE: Role = "engineer"

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



def default_config() -> str:
    return os.environ.get("BOOTH_CONFIG", DEFAULT_CONFIG)


def load(path: str, cmd: str = "") -> LoadedConfig:
    """The config at `path`; an invalid one is said on stderr (naming the command `cmd`, if
    given) and ends boothctl with EXIT_USAGE."""
    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"boothctl{' ' if cmd else ''}{cmd}: invalid config: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from exc


def open_store(loaded: LoadedConfig, cmd: str) -> RecordStore:
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


def operator() -> str:
    """Who runs boothctl, for the audit trail: the person behind sudo if any."""
    try:
        return os.environ.get("SUDO_USER") or getpass.getuser()
    except (KeyError, OSError):
        return f"uid{os.getuid()}"


def config_opt(sp: argparse.ArgumentParser) -> None:
    sp.add_argument(
        "--config",
        default=default_config(),
        help=f"booth config TOML (default: $BOOTH_CONFIG or {DEFAULT_CONFIG})",
    )


def mqtt_opts(sp: argparse.ArgumentParser) -> None:
    """The options of every command that talks to the broker as a client."""
    config_opt(sp)
    sp.add_argument("--timeout", type=float, default=5.0, help="seconds to wait (default 5)")
    sp.add_argument("--username", default=None, help="MQTT user (the MES's)")
    sp.add_argument("--password-file", default=None, help="file holding the MQTT password")
    sp.add_argument(
        "--tls-cert", default=None, help="client certificate, if the broker asks for one"
    )
    sp.add_argument("--tls-key", default=None, help="the key of --tls-cert")


def check_parser(
    tools: argparse._SubParsersAction[argparse.ArgumentParser], what: str, path_help: str
) -> argparse.ArgumentParser:
    """``boothctl config check`` and ``boothctl recipe check``: one shape for both."""
    p = tools.add_parser(
        "check",
        help=f"validate a {what}",
        description="Print every problem with its file and field; exit 0 only if valid.",
    )
    p.add_argument("path", help=path_help)
    return p
