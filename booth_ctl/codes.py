"""The contract's command error codes and the one refusal every room raises with them.

A leaf module: ``control`` raises :class:`CommandRefused`, ``commands`` judges with it and
``links`` turn it into their wire format, and none of them needs another for it.
"""

from __future__ import annotations

from typing import Any

# CONTRACT section 3.
BAD_REQUEST = "bad_request"
UNKNOWN_COMMAND = "unknown_command"
INVALID_STATE = "invalid_state"
INTERLOCK = "interlock"
UNKNOWN_RECIPE = "unknown_recipe"
INVALID_RECIPE = "invalid_recipe"
BUSY = "busy"
#: Before the runtime has its first complete process image and status (docs/mqtt.md).
NOT_READY = "not_ready"
#: The source's role may not issue the command; only links that carry a role (HMI, CLI) see it.
FORBIDDEN = "forbidden"

ERROR_CODES = frozenset(
    {
        BAD_REQUEST,
        UNKNOWN_COMMAND,
        INVALID_STATE,
        INTERLOCK,
        UNKNOWN_RECIPE,
        INVALID_RECIPE,
        BUSY,
        NOT_READY,
        FORBIDDEN,
    }
)


class CommandRefused(Exception):
    """A command that will not run; ``code`` is one of :data:`ERROR_CODES`."""

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.details: dict[str, Any] = details or {}
