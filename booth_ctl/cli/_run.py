"""``boothctl run``: the supervisor daemon, its logging for journald and its stop signals."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

import uvloop

from booth_ctl.cli._common import (
    EXIT_OK,
    EXIT_REFUSED,
    SYSLOG_PRIORITY,
    config_opt,
    load,
)
from booth_ctl.records import RecordError
from drivers import ConfigError

log = logging.getLogger("booth_ctl")


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
    loaded = load(args.config)
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


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = sub.add_parser("run", help="run the supervisor daemon (what the systemd unit starts)")
    config_opt(run)
    run.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    run.set_defaults(func=cmd_run)
