"""``boothctl mode`` and ``boothctl records export``: offline, on the record store."""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

from booth_ctl.cli._common import (
    CLI_ROLE,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_USAGE,
    config_opt,
    load,
    open_store,
    operator,
)
from booth_ctl.commands import Source, judge


def cmd_mode(args: argparse.Namespace) -> int:
    loaded = load(args.config)
    store = open_store(loaded, "mode")
    with store:
        before = store.get_mode()
        if args.mode is None:
            print(before)
            return EXIT_OK
        # The same rules as the authority's, for a person at the booth PC (the supervisor need
        # not run: the mode is in the store, and it picks a change up within a second).
        source = Source("cli", user=operator(), role=CLI_ROLE)
        refused = judge("set_mode", source, before)
        if refused is not None:
            print(f"boothctl mode: {refused.code}: {refused.message}", file=sys.stderr)
            return EXIT_REFUSED
        store.set_mode(args.mode, f"boothctl:{source.user}", user=source.user, role=source.role)
        after = store.get_mode()
    change = "unchanged" if before == after else f"was {before}"
    print(f"{after} ({change}; the supervisor applies it within a second)")
    return EXIT_OK


def cmd_records_export(args: argparse.Namespace) -> int:
    loaded = load(args.config)
    store = open_store(loaded, "records export")
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


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    rsub = records.add_subparsers(dest="records_cmd", required=True, metavar="SUBCOMMAND")
    export = rsub.add_parser(
        "export",
        help="a lot's units and dips as CSV",
        description="Every dip of every job of a lot (O2 and temperature at entry, depth, "
        "dwell, times) as CSV; exit 1 if the lot has no job on record.",
    )
    export.add_argument("--lot", required=True, help="the lot id")
    export.add_argument("--out", default=None, help="write to this file (default: stdout)")
    config_opt(export)
    export.set_defaults(func=cmd_records_export)
