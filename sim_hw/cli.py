"""``booth-sim``: run the simulated booth, read its truth, inject and clear faults.

    booth-sim [--config PATH]                       serve every device of the config
    booth-sim state [--config PATH]                 print the physical truth as JSON
    booth-sim fault NAME [--value V] [--config PATH]
    booth-sim fault --clear [NAME] [--config PATH]

``state`` and ``fault`` talk to the running simulator through its control socket
(``[sim] control_socket``). Errors are one line on stderr; the exit code is 1 (2 for usage, or
for a control socket that answers with something that is not a reply).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
from pathlib import Path

from drivers import ConfigError

from ._booth import SimBooth
from ._control import BadReply, SimNotRunning, request
from ._faults import FAULT_NAMES
from ._settings import load_sim_config

DEFAULT_CONFIG = Path("config/booth-sim.toml")
log = logging.getLogger("booth-sim")


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        type=Path,
        default=argparse.SUPPRESS,
        help=f"booth config (default: {DEFAULT_CONFIG})",
    )
    parser = argparse.ArgumentParser(
        prog="booth-sim",
        description="The simulated solder-immersion booth: serves every device of the config.",
        parents=[common],
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log every detail")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("state", parents=[common], help="print the physical truth as JSON")
    fault = sub.add_parser(
        "fault",
        parents=[common],
        help="inject a fault, or clear one or all",
        description="Faults: " + ", ".join(FAULT_NAMES),
    )
    fault.add_argument("name", nargs="?", help="fault name")
    fault.add_argument("--value", help="the fault's value (o2_leak: ppm; device_offline: device)")
    fault.add_argument("--clear", action="store_true", help="clear NAME, or every fault")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    config: Path = getattr(args, "config", DEFAULT_CONFIG)
    try:
        if args.command is None:
            return _serve(config, verbose=args.verbose)
        if args.command == "fault" and not args.clear and not args.name:
            parser.error("fault: give a NAME, or --clear [NAME]")
        return _client(config, args)
    except BadReply as exc:
        print(f"booth-sim: {exc}", file=sys.stderr)
        return 2
    except (ConfigError, SimNotRunning, OSError) as exc:
        print(f"booth-sim: {exc}", file=sys.stderr)
        return 1


def _client(config: Path, args: argparse.Namespace) -> int:
    sock = load_sim_config(config).control_socket
    if args.command == "state":
        reply = request(sock, {"cmd": "state"})
    elif args.clear:
        reply = request(sock, {"cmd": "clear", "name": args.name})
    else:
        reply = request(sock, {"cmd": "fault", "name": args.name, "value": args.value})
    if not reply.get("ok"):
        print(f"booth-sim: {reply.get('error', 'refused')}", file=sys.stderr)
        return 1
    key = "state" if args.command == "state" else "faults"
    if key not in reply:
        raise BadReply(f"simulator at {sock} answered without {key!r}: {json.dumps(reply)[:80]}")
    if args.command == "state":
        print(json.dumps(reply["state"], indent=2))
    else:
        print(json.dumps({"faults": reply["faults"]}))
    return 0


def _serve(config: Path, *, verbose: bool) -> int:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not verbose:
        # pymodbus logs every client that goes away; the simulator says what matters itself.
        logging.getLogger("pymodbus").setLevel(logging.WARNING)
    sim = SimBooth(config)
    asyncio.run(_run(sim))
    return 0


async def _run(sim: SimBooth) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with sim:
            log.info("ready; control socket %s", sim.control_socket)
            stopping = asyncio.create_task(stop.wait())
            failing = asyncio.create_task(sim.wait_failed())
            try:
                await asyncio.wait({stopping, failing}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (stopping, failing):
                    task.cancel()
                await asyncio.gather(stopping, failing, return_exceptions=True)
            log.info("stopping")
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)


if __name__ == "__main__":
    sys.exit(main())
