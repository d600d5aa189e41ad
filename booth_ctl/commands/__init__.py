"""The one command authority: every command, from any link or the CLI, enters here.

Parse, check readiness, role and mode, deduplicate by request id, audit, run through the
controller's command interface (a protocol, :class:`CommandTarget`) and answer with the
contract's codes. Imports ``booth_ctl.codes``, ``config`` and ``records``; never ``control``,
never a link, never the runtime.
"""

from typing import Any

from booth_ctl.codes import (
    BAD_REQUEST,
    BUSY,
    ERROR_CODES,
    FORBIDDEN,
    INTERLOCK,
    INVALID_RECIPE,
    INVALID_STATE,
    NOT_READY,
    UNKNOWN_COMMAND,
    UNKNOWN_RECIPE,
    CommandRefused,
)
from booth_ctl.commands._authority import Authority
from booth_ctl.commands._execute import CommandTarget
from booth_ctl.commands._models import COMMANDS, MAX_UNITS, RECIPE_NAME_RE
from booth_ctl.commands._open import open_authority
from booth_ctl.commands._recipes import RecipeBook, RecipeCheck, recipe_check
from booth_ctl.commands._replies import (
    make_reply,
    parse_payload,
    request_id_of,
    request_id_of_payload,
)
from booth_ctl.commands._rules import (
    HOST_LINKS,
    LOCAL_OK,
    READ_ONLY_PREFIXES,
    ROLES,
    SAFETY_DIRECTION,
    Mode,
    Role,
    Source,
    allowed,
    judge,
)

#: A reply dict of CONTRACT section 3: request_id, command, ok, error, result.
CommandReply = dict[str, Any]

__all__ = [
    "BAD_REQUEST",
    "BUSY",
    "COMMANDS",
    "ERROR_CODES",
    "FORBIDDEN",
    "HOST_LINKS",
    "INTERLOCK",
    "INVALID_RECIPE",
    "INVALID_STATE",
    "LOCAL_OK",
    "MAX_UNITS",
    "NOT_READY",
    "READ_ONLY_PREFIXES",
    "RECIPE_NAME_RE",
    "ROLES",
    "SAFETY_DIRECTION",
    "UNKNOWN_COMMAND",
    "UNKNOWN_RECIPE",
    "Authority",
    "CommandRefused",
    "CommandReply",
    "CommandTarget",
    "Mode",
    "RecipeBook",
    "RecipeCheck",
    "Role",
    "Source",
    "allowed",
    "judge",
    "make_reply",
    "open_authority",
    "parse_payload",
    "recipe_check",
    "request_id_of",
    "request_id_of_payload",
]
