"""Reading the booth TOML and the register maps it names: the part the supervisor and the
simulator share.

Both read the same file (the supervisor validates all of it, the simulator its own ``[sim]`` table
and the few numbers it needs); both must report an unreadable file, a bad map or a missing one in
the same words. Every problem is one line that starts with the file it is about and names the
field (or, for TOML syntax, the line and column).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Generic, TypeVar

from pydantic import ValidationError

from ._config import DeviceConfig, RegisterMap
from ._errors import ConfigError
from ._toml import TomlError, read_toml

C = TypeVar("C")

#: Several problems of one cross-field rule check are raised as one message, a line each.
RULE_SEPARATOR = "\n"


class LoadedFile(Generic[C]):
    """A validated booth file (the supervisor's whole config, or the simulator's part of it), its
    location and the register maps it names."""

    def __init__(self, path: Path, config: C, maps: dict[str, RegisterMap]) -> None:
        self.path = path
        self.config = config
        self.maps = maps

    def resolve(self, relative: str) -> Path:
        """A path from the config, relative to the config file's folder."""
        p = Path(relative)
        return p if p.is_absolute() else (self.path.parent / p)


def read_booth_file(path: Path) -> tuple[dict[str, Any] | None, list[str]]:
    """The parsed file, or None and the one line that says why it cannot be read."""
    try:
        return read_toml(path), []
    except OSError as exc:
        return None, [f"{path}: cannot read: {exc.strerror}"]
    except TomlError as exc:
        return None, [f"{path}: {exc}"]


def validation_lines(exc: ValidationError) -> list[str]:
    """One line per error, ``field.path: message``; a cross-field rule names its own fields."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top)"
        msg = str(err["msg"]).removeprefix("Value error, ")
        for part in msg.split(RULE_SEPARATOR):
            lines.append(part if loc == "(top)" and ": " in part else f"{loc}: {part}")
    return lines


def map_file(config_path: Path, relative: str) -> Path:
    """A map path of the config, relative to the config file's folder."""
    p = Path(relative)
    return p if p.is_absolute() else config_path.parent / p


def load_maps(
    devices: Mapping[str, DeviceConfig], config_path: Path
) -> tuple[dict[str, RegisterMap], list[str]]:
    """The register maps the devices name, and one line per problem of any of them."""
    maps: dict[str, RegisterMap] = {}
    problems: list[str] = []
    for name, dev in devices.items():
        if dev.map is None:
            continue
        path = map_file(config_path, dev.map)
        field = f"devices.{name}.map"
        try:
            data = read_toml(path)
        except OSError as exc:
            problems.append(f"{config_path}: {field}: {path}: cannot read: {exc.strerror}")
            continue
        except TomlError as exc:
            problems.append(f"{path}: {exc} ({config_path}: {field})")
            continue
        try:
            maps[name] = RegisterMap.model_validate(data)
        except ValidationError as exc:
            problems.extend(
                f"{path}: {line} ({config_path}: {field})" for line in validation_lines(exc)
            )
    return maps, problems


def refuse(problems: list[str]) -> ConfigError:
    """The error a loader raises: every problem, each still naming its file and field."""
    return ConfigError("; ".join(problems))
