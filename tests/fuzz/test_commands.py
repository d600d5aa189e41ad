"""Bad MES commands, fuzzed: every one gets exactly one clear refusal (or is logged and dropped
when it carries no readable request_id), nothing crashes, and the controller does not move.

The command authority runs in front of the real Controller and a real record store (no MQTT, for
speed); ``test_commands_mqtt.py`` sends a handful of the same cases through a broker.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from booth_ctl.commands import COMMANDS, RECIPE_NAME_RE

from ._dispatch import DispatchRig, check_reply_shape, dispatch_rig, readable_request_id
from ._scale import examples

FUZZ = settings(
    max_examples=examples(100),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

#: Commands that a valid body would run with an effect even on a stopped booth.
ACTING = ("abort", "stop", "put_recipe")


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[DispatchRig]:
    async with dispatch_rig(tmp_path) as r:
        yield r


# ---------------------------------------------------------------------- strategies

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=16,
)
control_text = st.text(
    alphabet=st.characters(min_codepoint=0, max_codepoint=0x1F)
    | st.sampled_from("ab/\\.\u2028\ufeff"),
    min_size=1,
    max_size=40,
)
path_like = st.sampled_from(
    [
        "../demo",
        "../../etc/passwd",
        "/etc/passwd",
        "demo.toml",
        "demo/../demo",
        "..",
        ".",
        "demo\x00",
        "demo\n",
        " demo",
        "~",
        "C:\\recipes\\demo",
        "d\u00e9mo",
        "x" * 65,
        "",
    ]
)
bad_request_ids = (
    st.sampled_from(["", "x" * 65, "y" * 10_000])
    | st.integers()
    | st.none()
    | st.lists(st.text(max_size=3), max_size=2)
    | st.just({"id": "a"})
    | st.floats()
)
known_commands = st.sampled_from(sorted(COMMANDS))
unknown_commands = st.text(min_size=0, max_size=30).filter(
    lambda c: c not in COMMANDS
) | st.sampled_from(
    ["RESET", "reset ", "start-job", "../reset", "get_status/x", "\x00", "cmd/reset"]
)


def _rid() -> str:
    return uuid.uuid4().hex


def _dumps(body: Any) -> bytes:
    # allow_nan (the default) writes NaN / Infinity tokens, which Python's parser reads back.
    return json.dumps(body).encode()


@st.composite
def bad_bodies(draw: st.DrawFn, command: str) -> dict[str, Any]:
    """A JSON object with a good request_id and at least one wrong field for ``command``."""
    model = COMMANDS[command]
    fields = [f for f in model.model_fields if f != "request_id"]
    body: dict[str, Any] = {"request_id": _rid()}
    for f in fields:
        if draw(st.booleans()):
            body[f] = draw(json_values | control_text | path_like)
    extra = draw(st.text(min_size=1, max_size=10).filter(lambda k: k not in model.model_fields))
    fault = draw(
        st.sampled_from(["extra", "wrong_types", "missing"]) if fields else st.just("extra")
    )
    if fault == "extra" or command in ACTING:
        body[extra] = draw(json_values)
    elif fault == "wrong_types":
        f = draw(st.sampled_from(fields))
        body[f] = draw(st.none() | st.lists(st.integers(), max_size=2) | st.floats(allow_nan=True))
    else:
        body.pop(draw(st.sampled_from(fields)), None)
    return body


def _raw_texts() -> st.SearchStrategy[bytes]:
    rid = '"request_id": "RID"'
    fixed = [
        b"",
        b"{",
        b"}",
        b"null",
        b"[]",
        b'"request_id"',
        b"NaN",
        b"Infinity",
        b"-Infinity",
        b"1e400",
        b"\xff\xfe\x00\x01",
        b'{"request_id": "a"',  # truncated
        b'{"request_id": "\\ud800"',  # truncated, with a lone surrogate escape
        b"\xef\xbb\xbf{}",  # a byte order mark
        ("{" + rid + ', "units": NaN}').encode(),
        ("{" + rid + ', "units": Infinity, "lot_id": "L"}').encode(),
        ("{" + rid + ', "units": 1e400}').encode(),
        ("{" + rid + ', "units": ' + "9" * 5000 + "}").encode(),  # beyond int parsing limits
        b'{"request_id": 1e400}',
        b'{"request_id": NaN}',
        ("{" + rid + ", " + rid + ', "units": -1}').encode(),  # duplicate keys
        b'{"request_id": "dup", "request_id": ""}',  # the last duplicate wins: no id
    ]
    # "RID" becomes a fresh request_id in the test (hypothesis repeats its own uuids across
    # examples, and a repeat is rightly answered with the first reply).
    return st.sampled_from(fixed) | st.binary(max_size=200)


# ---------------------------------------------------------------------- properties


async def _judge(rig: DispatchRig, command: str, payload: bytes) -> dict[str, Any] | None:
    """Send one payload; check the one-reply rule and that a refusal changed nothing."""
    outcome = await rig.send(command, payload)
    rid = readable_request_id(payload)
    if rid is None:
        assert outcome.reply is None, outcome.reply
    else:
        assert outcome.reply is not None, f"no reply to {payload[:200]!r}"
        check_reply_shape(outcome.reply, command, rid)
    if outcome.reply is None or not outcome.reply["ok"]:
        assert outcome.unchanged, (payload[:200], outcome)
    return outcome.reply


@FUZZ
@given(command=known_commands | unknown_commands, payload=_raw_texts())
async def test_raw_payloads_are_refused_or_dropped(
    rig: DispatchRig, command: str, payload: bytes
) -> None:
    await _judge(rig, command, payload.replace(b'"RID"', f'"{_rid()}"'.encode()))


@FUZZ
@given(data=st.data(), command=known_commands)
async def test_wrong_fields_are_bad_requests(
    rig: DispatchRig, data: st.DataObject, command: str
) -> None:
    body = data.draw(bad_bodies(command))
    reply = await _judge(rig, command, _dumps(body))
    assert reply is not None
    assert reply["ok"] is False
    assert reply["error"]["code"] == "bad_request", reply
    assert reply["error"]["message"].startswith(f"{command}: "), reply


@FUZZ
@given(command=known_commands | unknown_commands, rid=bad_request_ids)
async def test_unreadable_or_bad_request_ids(rig: DispatchRig, command: str, rid: Any) -> None:
    reply = await _judge(rig, command, _dumps({"request_id": rid}))
    if isinstance(rid, str) and len(rid) > 64:
        assert reply is not None and reply["error"]["code"] == "bad_request"
        assert "64" in reply["error"]["message"]
    elif not (isinstance(rid, str) and rid):
        assert reply is None


@FUZZ
@given(command=unknown_commands, body=st.dictionaries(st.text(max_size=8), json_values, max_size=3))
async def test_unknown_commands(rig: DispatchRig, command: str, body: dict[str, Any]) -> None:
    body["request_id"] = _rid()
    reply = await _judge(rig, command, _dumps(body))
    assert reply is not None and reply["error"]["code"] == "unknown_command", reply
    assert "reset" in reply["error"]["message"]  # lists the known ones


@FUZZ
@given(name=(path_like | control_text).filter(lambda n: not re.fullmatch(RECIPE_NAME_RE, n)))
async def test_path_like_recipe_names_never_reach_the_file_system(
    rig: DispatchRig, name: str
) -> None:
    cases: list[tuple[str, dict[str, Any]]] = [
        ("get_recipe", {"name": name}),
        ("put_recipe", {"name": name, "recipe": {}}),
        ("start_job", {"lot_id": "L1", "recipe": name, "units": 1}),
    ]
    for command, body in cases:
        reply = await _judge(rig, command, _dumps({"request_id": _rid(), **body}))
        assert reply is not None and reply["error"]["code"] == "bad_request", reply
        assert "name" in reply["error"]["message"] or "recipe" in reply["error"]["message"]


@settings(FUZZ, max_examples=examples(40))
@given(
    recipe=st.dictionaries(st.text(max_size=12), json_values, max_size=6)
    | st.text(max_size=200)
    | st.sampled_from(
        [
            "o2_limit_ppm = nan",
            "o2_limit_ppm = inf\nholder = 'suction'",
            "[flux\n",
            "dips = [{}, {}]",
            "o2_limit_ppm = 1e400",
            "\x00",
        ]
    )
)
async def test_put_recipe_garbage_is_invalid_and_not_stored(rig: DispatchRig, recipe: Any) -> None:
    name = "fuzzed"
    reply = await _judge(
        rig, "put_recipe", _dumps({"request_id": _rid(), "name": name, "recipe": recipe})
    )
    assert reply is not None and reply["ok"] is False, reply
    assert reply["error"]["code"] == "invalid_recipe", reply
    assert reply["error"]["details"]["problems"], reply
    listing = await rig.send("list_recipes", _dumps({"request_id": _rid()}))
    assert listing.reply is not None
    assert name not in {r["name"] for r in listing.reply["result"]["recipes"]}


async def test_huge_and_nested_payloads_within_the_parser_limits(rig: DispatchRig) -> None:
    big = "x" * 1_000_000
    nested: Any = "leaf"
    for _ in range(200):
        nested = {"a": [nested]}
    cases: list[tuple[str, dict[str, Any]]] = [
        ("start_job", {"lot_id": big, "recipe": "demo", "units": 1}),
        ("get_job", {"lot_id": big}),
        ("ack_alarm", {"alarm_id": big}),
        ("put_recipe", {"name": "deep", "recipe": nested}),
        ("reset", {"junk": nested}),
        ("get_status", {"junk": [big] * 4}),
    ]
    for command, body in cases:
        reply = await _judge(rig, command, _dumps({"request_id": _rid(), **body}))
        assert reply is not None and reply["ok"] is False, reply
        assert reply["error"]["code"] in ("bad_request", "invalid_recipe"), reply
        assert len(reply["error"]["message"]) < 20_000  # the refusal does not echo megabytes


async def test_a_repeated_request_id_gets_the_first_reply_and_runs_once(rig: DispatchRig) -> None:
    rid = _rid()
    first = await _judge(rig, "reset", _dumps({"request_id": rid}))
    assert first is not None and first["error"]["code"] == "interlock"
    # The same id again, even with another command or a broken body: the first reply, as it was.
    for command, payload in [
        ("reset", _dumps({"request_id": rid})),
        ("abort", _dumps({"request_id": rid})),
        ("start_job", _dumps({"request_id": rid, "units": "NaN"})),
    ]:
        outcome = await rig.send(command, payload)
        assert outcome.reply == first
        assert outcome.unchanged
    assert rig.ctl.state == "stopped"


async def test_control_characters_in_ids_are_carried_back_verbatim(rig: DispatchRig) -> None:
    for rid in ["\x00", "a\nb", "\x1b[31mred", "tab\there", "\u2028", "\x7f"]:
        reply = await _judge(rig, "get_status", _dumps({"request_id": rid + _rid()[:8]}))
        assert reply is not None and reply["ok"] is True
        assert reply["request_id"].startswith(rid)
    lot = await _judge(rig, "get_job", _dumps({"request_id": _rid(), "lot_id": "L\x00\x01"}))
    assert lot is not None and lot["error"]["code"] == "bad_request"
