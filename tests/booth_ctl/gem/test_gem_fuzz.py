"""Whatever text a host puts in a message the equipment serves, the answer is a reply or an S9
error (illegal data): never an exception that reaches the link, never a change half made."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from booth_ctl.links.gem._equipment import Equipment
from booth_ctl.links.gem._gem_state import GemState
from booth_ctl.links.gem._hsms import SecsError
from booth_ctl.links.gem._hsms_frame import data
from booth_ctl.links.gem._secs2 import BOOL, F8, I4, U1, U4, A, Fmt, Item, L
from booth_ctl.links.gem._services import HANDLERS, Services

_leaf = st.one_of(
    st.text(alphabet="abc_01", max_size=6).map(A),
    st.integers(0, 3000).map(U4),
    st.integers(0, 255).map(U1),
    st.integers(-5, 5).map(I4),
    st.floats(allow_nan=False, allow_infinity=False).map(F8),
    st.booleans().map(BOOL),
    st.binary(max_size=3).map(lambda b: Item(Fmt.B, b)),
    st.just(L()),
)
_items = st.one_of(
    st.none(),
    st.recursive(_leaf, lambda kids: st.lists(kids, max_size=4).map(lambda k: L(*k)),
                 max_leaves=12),
)
KEYS = sorted([(1, 1), (1, 3), (1, 11), (1, 13), (1, 15), (1, 17), *HANDLERS])


async def _submit(command: str, body: dict[str, Any]) -> dict[str, Any] | None:
    # The authority's answer to anything: a refusal (the fuzz is about the equipment's side).
    return {"request_id": body["request_id"], "command": command, "ok": False,
            "error": {"code": "bad_request", "message": "no"}, "result": None}


async def _none() -> None:
    return None


async def _zero() -> int:
    return 0


def _equipment() -> Equipment:
    eq = Equipment(
        GemState(),
        save=_none,
        deps=Services(
            status=lambda: {"state": "idle", "job": None, "alarms": []},
            telemetry=lambda: None,
            seq=lambda: 0,
            submit=_submit,
            on_communicating=lambda: None,
            spooled=_zero,
            purge_spool=_zero,
            transmit_spool=lambda: None,
            terminal=lambda tid, text: None,
        ),
    )
    eq.communicating.set()
    return eq


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(KEYS), _items)
async def test_any_text_gets_a_reply_or_illegal_data(
    key: tuple[int, int], item: Item | None
) -> None:
    eq = _equipment()
    before = eq.state.settings()
    frame = data(key[0], key[1], item, device=0, system=1, wbit=True)
    try:
        reply = await eq.on_data(frame, item)
    except SecsError as exc:
        assert exc.function == 7
        assert eq.state.settings() == before
        return
    assert reply is not None
    function, text = reply
    assert function == key[1] + 1
    assert text is not None
