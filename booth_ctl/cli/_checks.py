"""``boothctl config check`` and ``boothctl recipe check``: every problem with its place."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from booth_ctl.cli._common import (
    DEFAULT_CONFIG,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_USAGE,
    check_parser,
    default_config,
    load,
)
from booth_ctl.config._booth import LoadedConfig, check_config, load_config
from booth_ctl.config._coverage import coverage_lines
from drivers import ConfigError


def unenforced(loaded: LoadedConfig) -> list[str]:
    """Rules this booth's I/O gives no input for: valid, but said, so nobody counts on them."""
    io = loaded.config.device_of_kind("remote_io")
    io_map = loaded.maps.get(io)
    if io_map is not None and "flux_lid_closed" not in io_map.points:
        return [
            f"devices.{io}.map: {io_map.name} has no flux_lid_closed input: the flux-lid rule "
            "(no flux dip with the lid closed) is NOT enforced on this I/O"
        ]
    return []


def cmd_config_check(args: argparse.Namespace) -> int:
    path = Path(args.path)
    loaded, problems = check_config(path)
    if problems or loaded is None:
        for problem in problems:
            print(problem, file=sys.stderr)
        return EXIT_REFUSED
    cfg = loaded.config
    print(f"{path}: valid (booth {cfg.booth_id}, {len(cfg.devices)} devices)")
    for note in unenforced(loaded):
        print(f"{path}: note: {note}")
    # After the valid line (CONTRACT s.2 keeps that line first): which layer covers which device.
    for line in coverage_lines(loaded):
        print(line)
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
        return [load(args.config or default_config())]
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


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    config = sub.add_parser("config", help="booth config tools")
    csub = config.add_subparsers(dest="config_cmd", required=True, metavar="SUBCOMMAND")
    check_parser(csub, "booth config and its register maps", "booth config TOML").set_defaults(
        func=cmd_config_check
    )

    recipe = sub.add_parser("recipe", help="recipe tools")
    rsub = recipe.add_subparsers(dest="recipe_cmd", required=True, metavar="SUBCOMMAND")
    rcheck = check_parser(rsub, "recipe against a booth config", "recipe TOML")
    rcheck.add_argument(
        "--config",
        default=None,
        help=f"booth config TOML (default: $BOOTH_CONFIG, else {DEFAULT_CONFIG} if it exists, "
        "else every booth config beside the recipe's folder that takes its recipes from it)",
    )
    rcheck.set_defaults(func=cmd_recipe_check)
