"""The reply of CONTRACT section 3, and reading a command message: its JSON and request id."""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from booth_ctl.codes import BAD_REQUEST, INVALID_STATE, CommandRefused

#: The arguments of a refused request are kept on the audit trail up to this many characters.
AUDIT_ARGS_MAX = 4096
REQUEST_ID_MAX = 64


def make_reply(
    request_id: str,
    command: str,
    *,
    result: Any = None,
    error: CommandRefused | None = None,
) -> dict[str, Any]:
    err: dict[str, Any] | None = None
    if error is not None:
        err = {"code": error.code, "message": error.message}
        if error.details:
            err["details"] = error.details
    return {
        "request_id": request_id,
        "command": command,
        "ok": error is None,
        "error": err,
        "result": None if error is not None else result,
    }


def refusal(request_id: str, command: str, code: str, message: str) -> dict[str, Any]:
    return make_reply(request_id, command, error=CommandRefused(code, message))


def parse_payload(payload: bytes) -> Any:
    """The JSON of a command message; ValueError says why it is not JSON.

    ``json.loads`` raises RecursionError, not ValueError, on deep nesting (``[[[[...``).
    """
    try:
        return json.loads(payload)
    except RecursionError as exc:
        raise ValueError("payload is nested too deeply to be a command") from exc
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError alike
        raise ValueError(f"payload is not JSON: {exc}") from exc


def request_id_of(body: Any) -> str | None:
    """The request_id a reply can be addressed to, or None."""
    rid = body.get("request_id") if isinstance(body, dict) else None
    return rid if isinstance(rid, str) and rid else None


def request_id_of_payload(payload: bytes) -> str | None:
    try:
        return request_id_of(parse_payload(payload))
    except ValueError:
        return None


def encodable(body: Any) -> bool:
    try:
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def unstorable_request_id(rid: str) -> str | None:
    """Why a request_id cannot be stored (and so cannot be matched against a repeat), or None."""
    if len(rid) > REQUEST_ID_MAX:
        return f"request_id is {len(rid)} characters long; at most {REQUEST_ID_MAX}"
    if not encodable(rid):
        return (
            "request_id holds a \\u escape that is not a character (a lone UTF-16 surrogate)"
        )
    return None


def audit_args(args: dict[str, Any]) -> dict[str, Any]:
    """What a refused request's arguments go on record as: as given, unless they are too long
    to keep or hold no text (a lone surrogate); then their JSON, escaped and cut."""
    text = json.dumps(args, ensure_ascii=True, default=str)
    if len(text) <= AUDIT_ARGS_MAX and encodable(args):
        return args
    return {"as_received": text[:AUDIT_ARGS_MAX], "length": len(text)}


def cut_short_reply(request_id: str, command: str) -> dict[str, Any]:
    """The answer to a repeat of a command the booth was running when it stopped (or whose reply
    could not be put on record): it may or may not have taken effect, and it is not run again."""
    return make_reply(
        request_id,
        command,
        error=CommandRefused(
            INVALID_STATE,
            f"an earlier attempt of request_id {request_id!r} ({command}) was cut short while it "
            "ran (the booth stopped); whether it took effect is unknown and it is not run again: "
            "check get_status (or get_job) and send a new request_id",
            {"cut_short": True},
        ),
    )


def describe(command: str, exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(body)"
        if err["type"] == "extra_forbidden":
            parts.append(f"{loc}: unexpected field")
        else:
            parts.append(f"{loc}: {err['msg']}")
    return f"{command}: " + "; ".join(parts)


def bad_request(command: str, exc: ValidationError) -> CommandRefused:
    return CommandRefused(BAD_REQUEST, describe(command, exc))
