"""``boothctl``: the supervisor daemon and the operator's and MES's command-line tools.

Each group of subcommands lives in its own module with its ``register``: ``run`` (:mod:`._run`),
``send``/``status``/``watch`` (:mod:`._mes`), ``mode``/``records`` (:mod:`._records`),
``config check``/``recipe check`` (:mod:`._checks`), ``device`` (:mod:`._device`),
``user`` (:mod:`._user`).
"""

from __future__ import annotations

import argparse

from booth_ctl.cli import _checks, _device, _mes, _records, _run, _user
from booth_ctl.cli._common import DEFAULT_CONFIG


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="boothctl",
        description="Supervisor of a solder-immersion booth, and its tools.",
        epilog=f"--config defaults to $BOOTH_CONFIG or {DEFAULT_CONFIG}.",
    )
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    for part in (_run, _mes, _records, _checks, _device, _user):
        part.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    rc: int = args.func(args)
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
