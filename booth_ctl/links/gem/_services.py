"""GEM services beyond stream 1: equipment constants, clock, reports (S2), alarms (S5), spool
(S2F43, S6F23), remote commands (S2F41), process programs (S7) and terminal services (S10).

Remote commands and recipes go through the one command authority, as MQTT's do: what one link
refuses, the other refuses, and the HCACK says why (docs/gem.md: the HCACK of each refusal code).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from booth_ctl.links.gem._gem_vars import ALARM_BY_ALID, ALARMS, EC_BY_ID, ECS, value_item
from booth_ctl.links.gem._hsms_frame import Frame
from booth_ctl.links.gem._secs2 import U4, A, B, Fmt, Item, L, SecsFormatError

if TYPE_CHECKING:
    from booth_ctl.links.gem._equipment import Equipment

log = logging.getLogger("booth_ctl.gem")

HCACK_OK, HCACK_UNKNOWN, HCACK_NOT_NOW, HCACK_BAD_PARAM = 0, 1, 2, 3
HCACK_BY_CODE = {
    "unknown_command": HCACK_UNKNOWN,
    "invalid_state": HCACK_NOT_NOW,
    "interlock": HCACK_NOT_NOW,
    "busy": HCACK_NOT_NOW,
    "not_ready": HCACK_NOT_NOW,
    "forbidden": HCACK_NOT_NOW,
    "bad_request": HCACK_BAD_PARAM,
    "unknown_recipe": HCACK_BAD_PARAM,
    "invalid_recipe": HCACK_BAD_PARAM,
}
#: CPACK (S2F42): 1 no such parameter name, 2 illegal value.
CPACK_NAME, CPACK_VALUE = 1, 2
#: ACKC7 (S7F4): 0 accepted, 1 permission not granted, 4 PPID not found, 6 other error.
ACKC7_OK, ACKC7_DENIED, ACKC7_NOT_FOUND, ACKC7_OTHER = 0, 1, 4, 6
TIME_FORMATS = ("%y%m%d%H%M%S", "%Y%m%d%H%M%S%f")


class Submit(Protocol):
    async def __call__(self, command: str, body: dict[str, Any]) -> dict[str, Any] | None: ...


@dataclass
class Services:
    """What the GEM handlers need of the booth (given by the link)."""

    status: Callable[[], dict[str, Any]]
    telemetry: Callable[[], dict[str, Any] | None]
    seq: Callable[[], int]
    submit: Submit
    on_communicating: Callable[[], None]
    #: Spooled messages waiting (S6F23 transmit) and dropping them (S6F23 purge).
    spooled: Callable[[], Awaitable[int]]
    purge_spool: Callable[[], Awaitable[int]]
    transmit_spool: Callable[[], None]
    terminal: Callable[[int, str], None]


Reply = tuple[int, Item | None]


def _text(item: Item | None) -> Item:
    """The message's text; a header-only message where text is needed is illegal data."""
    if item is None:
        raise SecsFormatError("the message has no text")
    return item


def ids_of(item: Item | None) -> list[int]:
    """A list of ids: an L of numeric items, or one numeric array item."""
    if item is None:
        return []
    if item.fmt is Fmt.L:
        return [int(i.scalar) for i in item.items]
    value = item.python()
    return [int(v) for v in (value if isinstance(value, list) else [value])]


# ---------------------------------------------------------------------- S2: constants, clock


async def _s2f13(eq: Equipment, item: Item | None, frame: Frame) -> Reply:
    ecids = ids_of(item) or [e.id for e in ECS]
    out = [value_item(EC_BY_ID[e], eq.state.ecs[e]) if e in EC_BY_ID else L() for e in ecids]
    return 14, L(*out)


async def _saved_if_ok(eq: Equipment, ack: int) -> int:
    """A host's change answered ``ack``: one the equipment accepted (0) is saved before the
    reply, so that it outlives a restart."""
    if ack == 0:
        await eq.save()
    return ack


async def _s2f15(eq: Equipment, item: Item | None, frame: Frame) -> Reply:
    item = _text(item)
    pairs = [(int(p.items[0].scalar), p.items[1].python()) for p in item.items]
    return 16, B(await _saved_if_ok(eq, eq.state.set_ecs(pairs)))


async def _s2f29(eq: Equipment, item: Item | None, frame: Frame) -> Reply:
    rows = []
    for ecid in ids_of(item) or [e.id for e in ECS]:
        ec = EC_BY_ID.get(ecid)
        if ec is None:
            rows.append(L(U4(ecid), A(""), A(""), A(""), A(""), A("")))
            continue
        rows.append(L(U4(ec.id), A(ec.name), value_item(ec, ec.min), value_item(ec, ec.max),
                      value_item(ec, ec.default), A(ec.units)))
    return 30, L(*rows)


async def _s2f17(eq: Equipment, item: Item | None, frame: Frame) -> Reply:
    return 18, A(eq.clock_text())


async def _s2f31(eq: Equipment, item: Item | None, frame: Frame) -> Reply:
    """The host's time sets the equipment's GEM clock (an offset kept across restarts); the
    machine's own clock is not changed (that is the operating system's, kept by NTP)."""
    item = _text(item)
    text = item.text.strip()
    when: dt.datetime | None = None
    for fmt in TIME_FORMATS:
        try:
            when = dt.datetime.strptime(text + ("0000" if len(text) == 16 else ""), fmt)
            break
        except ValueError:
            continue
    if when is None:
        try:
            when = dt.datetime.fromisoformat(text)
        except ValueError:
            return 32, B(1)
    eq.state.clock_offset_s = round(when.timestamp() - time.time(), 3)
    await eq.save()
    return 32, B(0)


# ---------------------------------------------------------------------- S2: reports, events


def _id_lists(item: Item | None) -> list[tuple[int, list[int]]]:
    """``L(DATAID, L(L(ID, L(ID...))...))``: each ID with its list (S2F33 RPTID -> VIDs, S2F35
    CEID -> RPTIDs)."""
    return [(int(r.items[0].scalar), ids_of(r.items[1])) for r in _text(item).items[1].items]


async def _s2f33(eq: Equipment, item: Item | None, frame: Frame) -> Reply:
    return 34, B(await _saved_if_ok(eq, eq.state.define_reports(_id_lists(item))))


async def _s2f35(eq: Equipment, item: Item | None, frame: Frame) -> Reply:
    return 36, B(await _saved_if_ok(eq, eq.state.link_reports(_id_lists(item))))


async def _s2f37(eq: Equipment, item: Item | None, frame: Frame) -> Reply:
    item = _text(item)
    enable = bool(item.items[0].scalar)
    return 38, B(await _saved_if_ok(eq, eq.state.enable_events(enable, ids_of(item.items[1]))))


async def _s2f43(eq: Equipment, item: Item | None, frame: Frame) -> Reply:
    item = _text(item)
    streams = [(int(s.items[0].scalar), ids_of(s.items[1])) for s in item.items]
    rspack, errors = eq.state.set_spool(streams)
    await _saved_if_ok(eq, rspack)
    rows = [L(Item(Fmt.U1, (s,)), B(code), L(*(Item(Fmt.U1, (f,)) for f in fs)))
            for s, code, fs in errors]
    return 44, L(B(rspack), L(*rows))


# ---------------------------------------------------------------------- S2F41 remote commands


async def _s2f41(eq: Equipment, item: Item | None, frame: Frame) -> Reply:
    item = _text(item)
    rcmd = item.items[0].text
    params = item.items[1].items
    body: dict[str, Any] = {"request_id": f"gem-{frame.system}-{uuid.uuid4().hex[:12]}"}
    for p in params:
        name = p.items[0].text
        body[name] = _cpval(name, p.items[1])
    reply = await eq.deps.submit(rcmd, body)
    if reply is None:
        return 42, L(B(HCACK_BAD_PARAM), L())
    if reply.get("ok"):
        return 42, L(B(HCACK_OK), L())
    err = reply.get("error") or {}
    code = str(err.get("code", ""))
    hcack = HCACK_BY_CODE.get(code, HCACK_NOT_NOW)
    log.info("GEM: S2F41 %s refused (%s, HCACK %d): %s", rcmd, code, hcack, err.get("message"))
    cpacks = []
    if hcack == HCACK_BAD_PARAM:
        message = str(err.get("message", ""))
        for p in params:
            name = p.items[0].text
            if f"{name}: unexpected field" in message:
                cpacks.append(L(A(name), B(CPACK_NAME)))
            elif name in message:
                cpacks.append(L(A(name), B(CPACK_VALUE)))
    return 42, L(B(hcack), L(*cpacks))


def _cpval(name: str, item: Item) -> Any:
    value = item.python()
    if name == "recipe" and isinstance(value, str) and value.lstrip().startswith("{"):
        # A recipe sent as JSON text is the same recipe as the MQTT one.
        try:
            return json.loads(value)
        except ValueError:
            return value
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return value


# ---------------------------------------------------------------------- S5 alarms


async def _s5f3(eq: Equipment, item: Item | None, frame: Frame) -> Reply:
    item = _text(item)
    aled = item.items[0].value
    enable = bool((aled[0] if isinstance(aled, bytes) and aled else 0) & 0x80)
    alid_item = item.items[1]
    ids = ids_of(alid_item)
    return 4, B(await _saved_if_ok(eq, eq.state.enable_alarm(enable, ids[0] if ids else None)))


def _alarm_rows(eq: Equipment, alids: list[int], only_enabled: bool) -> list[Item]:
    active: dict[str, dict[str, Any]] = {}
    for a in eq.deps.status().get("alarms") or []:
        active.setdefault(str(a.get("code")), a)
    rows = []
    for alid, code, cat in ALARMS:
        if alids and alid not in alids:
            continue
        if only_enabled and alid in eq.state.disabled_alids:
            continue
        now = active.get(code)
        text = str(now.get("text") or now.get("id")) if now else code
        rows.append(L(B(cat | (0x80 if now else 0)), U4(alid),
                      A(text.encode("ascii", "replace").decode()[:120])))
    return rows


async def _s5f5(eq: Equipment, item: Item | None, frame: Frame) -> Reply:
    alids = ids_of(item)
    if any(a not in ALARM_BY_ALID for a in alids):
        raise SecsFormatError(f"unknown ALID in {alids}")
    return 6, L(*_alarm_rows(eq, alids, only_enabled=False))


async def _s5f7(eq: Equipment, item: Item | None, frame: Frame) -> Reply:
    return 8, L(*_alarm_rows(eq, [], only_enabled=True))


# ---------------------------------------------------------------------- S6F23 spool


async def _s6f23(eq: Equipment, item: Item | None, frame: Frame) -> Reply:
    item = _text(item)
    rsdc = int(item.scalar)
    waiting = await eq.deps.spooled()
    if not waiting:
        return 24, B(2)  # no spooled data
    if rsdc == 1:
        dropped = await eq.deps.purge_spool()
        log.warning("GEM: the host purged %d spooled events", dropped)
    else:
        # RSDC 0: in order, ahead of new events (already under way unless EC 2003 held it).
        eq.deps.transmit_spool()
    return 24, B(0)


# ---------------------------------------------------------------------- S7 process programs


async def _s7f19(eq: Equipment, item: Item | None, frame: Frame) -> Reply:
    reply = await eq.deps.submit("list_recipes", {"request_id": _rid(frame)})
    names = [r["name"] for r in ((reply or {}).get("result") or {}).get("recipes", [])]
    return 20, L(*(A(n) for n in names))


async def _s7f5(eq: Equipment, item: Item | None, frame: Frame) -> Reply:
    item = _text(item)
    ppid = item.text
    reply = await eq.deps.submit("get_recipe", {"request_id": _rid(frame), "name": ppid})
    if not reply or not reply.get("ok"):
        return 6, L()  # E5: a zero-length list when the PPID is not known
    body = json.dumps(reply["result"]["recipe"], separators=(",", ":"))
    return 6, L(A(ppid), A(body))


async def _s7f3(eq: Equipment, item: Item | None, frame: Frame) -> Reply:
    item = _text(item)
    ppid = item.items[0].text
    raw = item.items[1].python()
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    body = {"request_id": _rid(frame), "name": ppid, "recipe": _cpval("recipe", A(text))}
    reply = await eq.deps.submit("put_recipe", body)
    if reply is not None and reply.get("ok"):
        return 4, B(ACKC7_OK)
    code = ((reply or {}).get("error") or {}).get("code")
    log.info("GEM: S7F3 %s refused: %s", ppid, (reply or {}).get("error"))
    return 4, B(ACKC7_DENIED if code == "invalid_state" else ACKC7_OTHER)


def _rid(frame: Frame) -> str:
    return f"gem-{frame.system}-{uuid.uuid4().hex[:12]}"


# ---------------------------------------------------------------------- S10 terminal


async def _s10f3(eq: Equipment, item: Item | None, frame: Frame) -> Reply:
    item = _text(item)
    tid = int(item.items[0].scalar)
    text = item.items[1].text
    eq.deps.terminal(tid, text)
    return 4, B(0)


async def _s10f5(eq: Equipment, item: Item | None, frame: Frame) -> Reply:
    item = _text(item)
    tid = int(item.items[0].scalar)
    text = "\n".join(line.text for line in item.items[1].items)
    eq.deps.terminal(tid, text)
    return 6, B(0)


HANDLERS: dict[tuple[int, int], Callable[[Equipment, Item | None, Frame], Awaitable[Reply]]] = {
    (2, 13): _s2f13,
    (2, 15): _s2f15,
    (2, 17): _s2f17,
    (2, 29): _s2f29,
    (2, 31): _s2f31,
    (2, 33): _s2f33,
    (2, 35): _s2f35,
    (2, 37): _s2f37,
    (2, 41): _s2f41,
    (2, 43): _s2f43,
    (5, 3): _s5f3,
    (5, 5): _s5f5,
    (5, 7): _s5f7,
    (6, 23): _s6f23,
    (7, 3): _s7f3,
    (7, 5): _s7f5,
    (7, 19): _s7f19,
    (10, 3): _s10f3,
    (10, 5): _s10f5,
}

