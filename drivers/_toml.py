"""Reading TOML text and files so that every way a file can be unreadable is one error.

``tomllib`` reports a syntax error as ``TOMLDecodeError``, but an integer of more than 4300
digits as a plain ``ValueError`` and deep nesting as ``RecursionError``; a file that is not UTF-8
fails before parsing with ``UnicodeDecodeError``. A config or recipe check must name the file
and the cause for each of them, never show a traceback.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any


class TomlError(ValueError):
    """Text that is not readable TOML; the message says why (without the file's name)."""


def parse_toml(text: str) -> dict[str, Any]:
    """Parse TOML text; every failure is a TomlError."""
    try:
        return tomllib.loads(text)
    except RecursionError as exc:
        raise TomlError("not valid TOML: nested too deeply") from exc
    except ValueError as exc:  # TOMLDecodeError, or a number beyond the parser's limits
        raise TomlError(f"not valid TOML: {exc}") from exc


def read_toml(path: Path) -> dict[str, Any]:
    """Read and parse a TOML file. OSError passes through (the caller names what is missing);
    content that is not UTF-8 or not TOML is a TomlError."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TomlError(f"not UTF-8 text (byte {exc.start}: {raw[exc.start]:#04x})") from exc
    return parse_toml(text)
