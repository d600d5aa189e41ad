"""The SECS-II codec: known encodings from SEMI E5, round trips, and refusal of broken bytes."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from booth_ctl.links.gem._secs2 import (
    BOOL,
    F8,
    I4,
    MAX_DEPTH,
    U1,
    U2,
    U4,
    A,
    B,
    Fmt,
    Item,
    L,
    SecsFormatError,
    as_item,
    decode,
    encode,
    num,
    sml,
)


def test_known_encodings() -> None:
    # Format byte = code << 2 | number of length bytes.
    assert encode(A("ab")) == bytes([0x41, 2]) + b"ab"
    assert encode(U4(1)) == bytes([0xB1, 4, 0, 0, 0, 1])
    assert encode(U1(7, 8)) == bytes([0xA5, 2, 7, 8])
    assert encode(B(0)) == bytes([0x21, 1, 0])
    assert encode(BOOL(True)) == bytes([0x25, 1, 1])
    assert encode(I4(-1)) == bytes([0x71, 4, 0xFF, 0xFF, 0xFF, 0xFF])
    assert encode(F8(1.0)) == bytes([0x81, 8, 0x3F, 0xF0, 0, 0, 0, 0, 0, 0])
    # A list's length counts items, not bytes.
    assert encode(L(U1(1), A(""))) == bytes([0x01, 2, 0xA5, 1, 1, 0x41, 0])
    assert encode(L()) == bytes([0x01, 0])


def test_long_items_take_more_length_bytes() -> None:
    text = "x" * 300
    raw = encode(A(text))
    assert raw[:3] == bytes([0x42, 0x01, 0x2C])
    assert decode(raw) == A(text)
    big = Item(Fmt.B, bytes(70_000))
    assert encode(big)[0] & 3 == 3
    assert decode(encode(big)) == big


def test_a_list_reads_back_the_same() -> None:
    item = L(A("state"), L(U4(1, 2), F8(2.5)), B(1, 2), BOOL(False), L(), num(Fmt.I1, -3))
    assert decode(encode(item)) == item
    assert item.items[1].items[1].scalar == 2.5
    assert item.python() == ["state", [[1, 2], 2.5], b"\x01\x02", False, [], -3]


@pytest.mark.parametrize(
    "raw, why",
    [
        (b"", "data ends"),
        (bytes([0x40, 1]) + b"a", "0 length bytes"),
        (bytes([0xFD, 0]), "unknown format code"),
        (bytes([0x41, 5]) + b"ab", "only 2 left"),
        (bytes([0xB1, 3, 0, 0, 1]), "not a multiple of 4"),
        (bytes([0x01, 2, 0x41, 0]), "data ends"),
        (bytes([0x41, 1]) + b"ab", "1 bytes left"),
        (bytes([0x42, 0]), "cut off"),
    ],
)
def test_broken_bytes_are_refused_with_the_reason(raw: bytes, why: str) -> None:
    with pytest.raises(SecsFormatError, match=why):
        decode(raw)


def test_deep_nesting_is_refused_not_a_crash() -> None:
    raw = bytes([0x01, 1]) * (MAX_DEPTH + 5) + bytes([0x01, 0])
    with pytest.raises(SecsFormatError, match="nested deeper"):
        decode(raw)


@pytest.mark.parametrize(
    "item, why",
    [
        (U1(256), "0..255"),
        (U4(-1), "0..4294967295"),
        (num(Fmt.I1, 200), "-128..127"),
        (U4(True), "integers"),
        (A("é"), "not ASCII"),
        (Item(Fmt.A, b"x"), "holds text"),
        (F8("1"), "numbers"),
    ],
)
def test_values_a_format_cannot_hold_are_refused(item: Item, why: str) -> None:
    with pytest.raises(SecsFormatError, match=why):
        encode(item)


def test_python_values_map_to_items() -> None:
    assert as_item("x") == A("x")
    assert as_item(3) == U4(3)
    assert as_item(-3) == num(Fmt.I8, -3)
    assert as_item(1.5) == F8(1.5)
    assert as_item(True) == BOOL(True)
    assert as_item(None) == A("")
    assert as_item([1, "a"]) == L(U4(1), A("a"))
    assert as_item(7, Fmt.U2) == U2(7)
    assert "<U4 3>" in sml(L(U4(3)))


_leaf = st.one_of(
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40).map(A),
    st.binary(max_size=40).map(lambda b: Item(Fmt.B, b)),
    st.lists(st.integers(0, 2**32 - 1), max_size=5).map(lambda v: U4(*v)),
    st.lists(st.integers(-(2**31), 2**31 - 1), max_size=5).map(lambda v: I4(*v)),
    st.lists(st.floats(allow_nan=False), max_size=3).map(lambda v: F8(*v)),
    st.lists(st.booleans(), max_size=3).map(lambda v: BOOL(*v)),
)
_items = st.recursive(_leaf, lambda kids: st.lists(kids, max_size=5).map(lambda k: L(*k)),
                      max_leaves=30)


@given(_items)
def test_round_trip(item: Item) -> None:
    assert decode(encode(item)) == item


@given(st.binary(max_size=60))
def test_random_bytes_decode_or_refuse_cleanly(raw: bytes) -> None:
    with contextlib.suppress(SecsFormatError):
        decode(raw)
