"""Private copies of the shipped booth configs, with free loopback ports and private paths.

Used by the tests, the demo and the benchmarks: several booths can run side by side on one
machine, each with its own ports, pseudo-terminals and records.
"""

from __future__ import annotations

import socket
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tomli_w

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "config"


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def render_config(
    tmp_path: Path,
    template: str = "booth-sim.toml",
    overrides: Callable[[dict[str, Any]], None] | None = None,
) -> Path:
    """A copy of a shipped config with free loopback ports and every path under ``tmp_path``.

    Map files and the recipes folder point back at the repository's, so the copy may live anywhere.
    ``overrides`` may edit the parsed dict before it is written.
    """
    data = tomllib.loads((CONFIG_DIR / template).read_text(encoding="utf-8"))
    run = tmp_path / "run"
    run.mkdir(parents=True, exist_ok=True)
    data["mqtt"]["port"] = free_port()
    if "metrics" in data:
        data["metrics"]["port"] = free_port()
    if "hmi" in data:
        data["hmi"]["port"] = free_port()
    data["records"]["path"] = str(run / "records.sqlite3")
    data["records"]["recipes_dir"] = str(CONFIG_DIR / data["records"].get("recipes_dir", "recipes"))
    for dev in data["devices"].values():
        if "map" in dev:
            dev["map"] = str(CONFIG_DIR / dev["map"])
        tr = dev["transport"]
        if tr["type"] == "tcp":
            tr["port"] = free_port()
        else:
            tr["port"] = str(run / Path(tr["port"]).name)
    if "sim" in data:
        data["sim"]["control_socket"] = str(run / "sim.sock")
    if overrides is not None:
        overrides(data)
    out = tmp_path / "booth.toml"
    out.write_text(tomli_w.dumps(data), encoding="utf-8")
    return out
