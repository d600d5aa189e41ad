"""SECS-II data items (SEMI E5 §9): the codec the HSMS link speaks.

An item is a format code and a value: a list of items for ``L``, bytes for ``B``, text for ``A``
(ASCII, one byte a character) and a tuple of numbers for the numeric and boolean formats (SECS-II
arrays; a scalar is an array of one). On the wire: one format byte (the code in its top six
bits, the count of length bytes, 1-3, in its low two), the length (big endian: the number of
items for a list, of bytes otherwise), then the data, big endian.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

#: The longest item body three length bytes can say.
MAX_LENGTH = 0xFFFFFF
#: A list nested deeper than this is refused (a hostile message must not exhaust the stack).
MAX_DEPTH = 64


class SecsFormatError(ValueError):
    """Bytes that are not a SECS-II item, or a value its format cannot hold."""


class Fmt(enum.IntEnum):
    """SECS-II format codes (octal in E5 Table 1)."""

    L = 0o00
    B = 0o10
    BOOLEAN = 0o11
    A = 0o20
    J = 0o21
    I8 = 0o30
    I1 = 0o31
    I2 = 0o32
    I4 = 0o34
    F8 = 0o40
    F4 = 0o44
    U8 = 0o50
    U1 = 0o51
    U2 = 0o52
    U4 = 0o54


#: struct code of each numeric format (big endian on the wire).
_NUMERIC: dict[Fmt, str] = {
    Fmt.BOOLEAN: "?",
    Fmt.I8: "q",
    Fmt.I1: "b",
    Fmt.I2: "h",
    Fmt.I4: "i",
    Fmt.F8: "d",
    Fmt.F4: "f",
    Fmt.U8: "Q",
    Fmt.U1: "B",
    Fmt.U2: "H",
    Fmt.U4: "I",
}
_INT_FMTS = frozenset({Fmt.I8, Fmt.I1, Fmt.I2, Fmt.I4, Fmt.U8, Fmt.U1, Fmt.U2, Fmt.U4})
_FLOAT_FMTS = frozenset({Fmt.F4, Fmt.F8})
_BOUNDS: dict[Fmt, tuple[int, int]] = {
    f: ((-(1 << (8 * struct.calcsize(c) - 1)), (1 << (8 * struct.calcsize(c) - 1)) - 1)
        if c.islower() else (0, (1 << (8 * struct.calcsize(c))) - 1))
    for f, c in _NUMERIC.items() if f in _INT_FMTS
}

Value = list["Item"] | bytes | str | tuple[Any, ...]


@dataclass(frozen=True)
class Item:
    fmt: Fmt
    value: Value

    # ------------------------------------------------------------------ reading helpers

    @property
    def items(self) -> list[Item]:
        if self.fmt is not Fmt.L:
            raise SecsFormatError(f"expected a list, got {self.fmt.name}")
        assert isinstance(self.value, list)
        return self.value

    @property
    def text(self) -> str:
        if self.fmt not in (Fmt.A, Fmt.J):
            raise SecsFormatError(f"expected text (A), got {self.fmt.name}")
        assert isinstance(self.value, str)
        return self.value

    @property
    def scalar(self) -> Any:
        """The one number of a numeric item (or the text of an A item)."""
        if self.fmt in (Fmt.A, Fmt.J):
            return self.value
        if self.fmt in _NUMERIC and isinstance(self.value, tuple) and len(self.value) == 1:
            return self.value[0]
        if self.fmt is Fmt.B and isinstance(self.value, bytes) and len(self.value) == 1:
            return self.value[0]
        raise SecsFormatError(f"expected one value, got {self.fmt.name} {self.value!r:.60}")

    def python(self) -> Any:
        """Plain Python: lists, text, bytes, a number (or a list of them for an array)."""
        if self.fmt is Fmt.L:
            return [i.python() for i in self.items]
        if isinstance(self.value, tuple):
            return self.value[0] if len(self.value) == 1 else list(self.value)
        return self.value


# ---------------------------------------------------------------------- builders


def L(*items: Item) -> Item:
    return Item(Fmt.L, list(items))


def A(text: str) -> Item:
    return Item(Fmt.A, text)


def B(*values: int) -> Item:
    return Item(Fmt.B, bytes(values))


def num(fmt: Fmt, *values: Any) -> Item:
    return Item(fmt, tuple(values))


def U1(*v: int) -> Item:
    return num(Fmt.U1, *v)


def U2(*v: int) -> Item:
    return num(Fmt.U2, *v)


def U4(*v: int) -> Item:
    return num(Fmt.U4, *v)


def I4(*v: int) -> Item:
    return num(Fmt.I4, *v)


def F8(*v: float) -> Item:
    return num(Fmt.F8, *v)


def BOOL(*v: bool) -> Item:
    return num(Fmt.BOOLEAN, *v)


# ---------------------------------------------------------------------- encoding


def encode(item: Item) -> bytes:
    out = bytearray()
    _encode_into(item, out)
    return bytes(out)


def _header(fmt: Fmt, length: int) -> bytes:
    if length > MAX_LENGTH:
        raise SecsFormatError(f"{fmt.name} item of length {length}: at most {MAX_LENGTH}")
    n = 1 if length <= 0xFF else 2 if length <= 0xFFFF else 3
    return bytes([(fmt << 2) | n]) + length.to_bytes(n, "big")


def _encode_into(item: Item, out: bytearray) -> None:
    fmt, value = item.fmt, item.value
    if fmt is Fmt.L:
        if not isinstance(value, list):
            raise SecsFormatError("an L item holds a list of items")
        out += _header(fmt, len(value))
        for sub in value:
            _encode_into(sub, out)
        return
    if fmt in (Fmt.A, Fmt.J):
        if not isinstance(value, str):
            raise SecsFormatError(f"an {fmt.name} item holds text")
        try:
            data = value.encode("ascii" if fmt is Fmt.A else "latin-1")
        except UnicodeEncodeError as exc:
            raise SecsFormatError(f"{fmt.name} item: {value!r:.40} is not ASCII") from exc
    elif fmt is Fmt.B:
        if not isinstance(value, bytes | bytearray):
            raise SecsFormatError("a B item holds bytes")
        data = bytes(value)
    else:
        data = _pack_numbers(fmt, value)
    out += _header(fmt, len(data))
    out += data


def _pack_numbers(fmt: Fmt, value: Value) -> bytes:
    if not isinstance(value, tuple):
        raise SecsFormatError(f"a {fmt.name} item holds a tuple of numbers")
    code = _NUMERIC[fmt]
    if fmt in _INT_FMTS:
        lo, hi = _BOUNDS[fmt]
        for v in value:
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise SecsFormatError(f"{fmt.name} holds integers {lo}..{hi}, not {v!r}")
    elif fmt in _FLOAT_FMTS:
        for v in value:
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise SecsFormatError(f"{fmt.name} holds numbers, not {v!r}")
    try:
        return struct.pack(f">{len(value)}{code}", *value)
    except (struct.error, OverflowError) as exc:
        raise SecsFormatError(f"{fmt.name}: {exc}") from exc


# ---------------------------------------------------------------------- decoding


def decode(data: bytes) -> Item:
    """One item that fills ``data`` exactly."""
    item, end = _decode_at(memoryview(data), 0, 0)
    if end != len(data):
        raise SecsFormatError(f"{len(data) - end} bytes left after the item")
    return item


def _decode_at(buf: memoryview, pos: int, depth: int) -> tuple[Item, int]:
    if depth > MAX_DEPTH:
        raise SecsFormatError(f"lists nested deeper than {MAX_DEPTH}")
    if pos >= len(buf):
        raise SecsFormatError(f"item header expected at byte {pos}, data ends")
    head = buf[pos]
    n = head & 0x03
    if n == 0:
        raise SecsFormatError(f"byte {pos}: format byte {head:#04x} says 0 length bytes")
    try:
        fmt = Fmt(head >> 2)
    except ValueError:
        raise SecsFormatError(f"byte {pos}: unknown format code {head >> 2:#o}") from None
    if pos + 1 + n > len(buf):
        raise SecsFormatError(f"byte {pos}: length bytes cut off")
    length = int.from_bytes(buf[pos + 1 : pos + 1 + n], "big")
    pos += 1 + n
    if fmt is Fmt.L:
        items = []
        for _ in range(length):
            sub, pos = _decode_at(buf, pos, depth + 1)
            items.append(sub)
        return Item(fmt, items), pos
    end = pos + length
    if end > len(buf):
        raise SecsFormatError(f"{fmt.name} item of {length} bytes, only {len(buf) - pos} left")
    raw = bytes(buf[pos:end])
    if fmt is Fmt.B:
        return Item(fmt, raw), end
    if fmt in (Fmt.A, Fmt.J):
        # Hosts send Latin-1 in A items now and then; take it rather than refuse the message.
        return Item(fmt, raw.decode("latin-1")), end
    size = struct.calcsize(_NUMERIC[fmt])
    if length % size:
        raise SecsFormatError(f"{fmt.name} item of {length} bytes: not a multiple of {size}")
    return Item(fmt, struct.unpack(f">{length // size}{_NUMERIC[fmt]}", raw)), end


# ---------------------------------------------------------------------- SML-ish text, for logs


def sml(item: Item | None, indent: int = 0) -> str:
    if item is None:
        return "<none>"
    pad = "  " * indent
    if item.fmt is Fmt.L:
        inner = "".join("\n" + sml(i, indent + 1) for i in item.items)
        return f"{pad}<L[{len(item.items)}]{inner}\n{pad}>"
    if item.fmt in (Fmt.A, Fmt.J):
        return f'{pad}<{item.fmt.name} "{item.text}">'
    if item.fmt is Fmt.B:
        assert isinstance(item.value, bytes)
        return f"{pad}<B {' '.join(f'0x{b:02X}' for b in item.value)}>"
    assert isinstance(item.value, tuple)
    return f"{pad}<{item.fmt.name} {' '.join(repr(v) for v in item.value)}>"


def as_item(value: Any, fmt: Fmt | None = None) -> Item:
    """A Python value as an item: text -> A, bool -> BOOLEAN, int -> U4 (I4 if negative),
    float -> F8, bytes -> B, list -> L; ``fmt`` forces a numeric format."""
    if isinstance(value, Item):
        return value
    if fmt is not None and fmt not in (Fmt.L, Fmt.A, Fmt.J, Fmt.B):
        return num(fmt, *(value if isinstance(value, Sequence) else (value,)))
    if value is None:
        return A("")
    if isinstance(value, str):
        return A(value)
    if isinstance(value, bool):
        return BOOL(value)
    if isinstance(value, int):
        return U4(value) if 0 <= value <= 0xFFFFFFFF else num(Fmt.I8, value)
    if isinstance(value, float):
        return F8(value)
    if isinstance(value, bytes):
        return Item(Fmt.B, value)
    if isinstance(value, Iterable):
        return L(*(as_item(v) for v in value))
    raise SecsFormatError(f"no SECS-II item for {type(value).__name__}")
