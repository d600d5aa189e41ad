"""``boothctl user add NAME --role ROLE``: an HMI user, the password read from stdin."""

from __future__ import annotations

import argparse
import getpass
import sqlite3
import sys

from booth_ctl.cli._common import config_opt, load
from booth_ctl.records import RecordError
from booth_ctl.records._users import ROLES, UserError, UserStore

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_USAGE = 2


def _read_password() -> str:
    """From the terminal (asked twice), or the first line of stdin when it is not a terminal."""
    if sys.stdin.isatty():
        first = getpass.getpass("password: ")
        if getpass.getpass("again: ") != first:
            raise UserError("the two passwords differ")
        return first
    return sys.stdin.readline().rstrip("\r\n")


def cmd_user_add(args: argparse.Namespace) -> int:
    loaded = load(args.config)
    path = loaded.resolve(loaded.config.records.path)
    try:
        password = _read_password()
        with UserStore(path) as users:
            users.add(args.name, args.role, password, replace=args.replace)
    except UserError as exc:
        print(f"boothctl user add: {exc}", file=sys.stderr)
        return EXIT_FAIL
    except (OSError, sqlite3.Error, RecordError) as exc:
        print(f"boothctl user add: records.path {path}: {exc}", file=sys.stderr)
        return EXIT_FAIL
    print(f"user {args.name} ({args.role}) stored in {path}")
    return EXIT_OK


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    user = sub.add_parser("user", help="HMI users")
    usub = user.add_subparsers(dest="user_cmd", required=True, metavar="SUBCOMMAND")
    add = usub.add_parser(
        "add", help="add an HMI user (password from stdin, stored as a scrypt hash)"
    )
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=ROLES)
    add.add_argument(
        "--replace", action="store_true", help="set a new password and role for an existing user"
    )
    config_opt(add)
    add.set_defaults(func=cmd_user_add)
