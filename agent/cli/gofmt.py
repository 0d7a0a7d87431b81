"""How Go prints values, for templates and tables: ``%v``, ``printf``, ``print``, ``println``,
Docker's ``json``, and columns aligned as Docker's tab writer aligns them. Pure: no I/O.

Values are JSON-like data (dicts, lists, strings, numbers, booleans, None) after ``plain``.
A dict prints as Go prints a map (``map[a:1 b:2]``, keys sorted), a list as a slice
(``[a b]``). None prints as empty: shoal's rows carry None where Docker's have an empty string.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import json
import math
import re
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any

__all__ = ["go_type", "plain", "sprint", "sprintf", "sprintln", "table", "text", "to_json"]


class _NoValue:
    """What a key missing from a map gives in Go: prints ``<no value>``, is false."""

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "<no value>"


NO_VALUE: Any = _NoValue()


def plain(obj: Any) -> Any:
    """``obj`` as JSON-ready data: specs and dataclasses as dicts, bytes as base64 (like Go)."""
    to_dict = getattr(obj, "to_dict", None)
    if callable(to_dict):
        return plain(to_dict())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [plain(v) for v in obj]
    if isinstance(obj, bytes | bytearray):
        return base64.b64encode(bytes(obj)).decode()
    if isinstance(obj, enum.Enum):
        return plain(obj.value)
    if isinstance(obj, datetime | date):
        return obj.isoformat()
    return obj


def to_json(value: Any) -> str:
    """Docker's ``json`` function: compact JSON, non-ASCII and ``<>&`` left as they are."""
    if value is NO_VALUE:
        value = None
    return json.dumps(plain(value), separators=(",", ":"), ensure_ascii=False)


def text(value: Any) -> str:
    """Go's ``%v`` of ``value`` (None empty, a missing map key ``<no value>``)."""
    if value is NO_VALUE:
        return "<no value>"
    value = plain(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e21 else _shortest_g(value)
    if isinstance(value, Mapping):
        return "map[" + " ".join(f"{k}:{text(v)}" for k, v in sorted(value.items())) + "]"
    if isinstance(value, list | tuple):
        return "[" + " ".join(text(v) for v in value) + "]"
    return str(value)


def go_type(value: Any) -> str:
    """The Go type a JSON-decoded ``value`` would have, as Go's messages name it."""
    if value is None or value is NO_VALUE:
        return "<nil>"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "map[string]interface {}"
    if isinstance(value, list | tuple):
        return "[]interface {}"
    return type(value).__name__


def sprint(*args: Any) -> str:
    """Go's ``fmt.Sprint``: a space between operands when neither is a string."""
    out = []
    for i, arg in enumerate(args):
        if i and not isinstance(arg, str) and not isinstance(args[i - 1], str):
            out.append(" ")
        out.append(text(arg))
    return "".join(out)


def sprintln(*args: Any) -> str:
    """Go's ``fmt.Sprintln``: operands always space-separated, and a newline."""
    return " ".join(text(arg) for arg in args) + "\n"


_VERB = re.compile(r"%([-+# 0]*)(\d+|\*)?(?:\.(\d*|\*))?(.|$)", re.DOTALL)


def sprintf(fmt: str, *args: Any) -> str:
    """Go's ``fmt.Sprintf`` for the verbs templates use: ``%v %s %q %d %f %e %g %x %X %t %c
    %o %b %%`` with flags, width and precision; bad verbs and argument counts print as Go's do
    (``%!d(string=web)``, ``%!s(MISSING)``, ``%!(EXTRA int=1)``)."""
    out: list[str] = []
    pos = 0
    used = 0
    while (at := fmt.find("%", pos)) >= 0:
        out.append(fmt[pos:at])
        match = _VERB.match(fmt, at)
        assert match is not None  # the pattern matches any "%" (the verb may be empty)
        flags, width_text, precision_text, verb = match.groups()
        pos = match.end()
        if verb == "%":
            out.append("%")
            continue
        if verb == "":
            out.append("%!(NOVERB)")
            continue
        width: int | None = None
        precision: int | None = None
        if width_text == "*":
            width, used = _star(args, used)
        elif width_text:
            width = int(width_text)
        if precision_text == "*":
            precision, used = _star(args, used)
        elif precision_text is not None:
            precision = int(precision_text or 0)
        if used >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        value = args[used]
        used += 1
        out.append(_pad(_verb(verb, flags, precision, value), flags, width, verb))
    out.append(fmt[pos:])
    if used < len(args):
        extra = ", ".join(f"{go_type(a)}={text(a)}" for a in args[used:])
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)


def _star(args: tuple[Any, ...], used: int) -> tuple[int | None, int]:
    if used < len(args) and isinstance(args[used], int) and not isinstance(args[used], bool):
        return args[used], used + 1
    return None, used + 1


def _pad(body: str, flags: str, width: int | None, verb: str) -> str:
    if width is None or len(body) >= width:
        return body
    if "-" in flags:
        return body.ljust(width)
    if "0" in flags and verb in "dfFeEgGxXob" and not body.startswith("%!"):
        sign = body[0] if body[:1] in "+-" else ""
        return sign + body[len(sign) :].rjust(width - len(sign), "0")
    return body.rjust(width)


def _verb(verb: str, flags: str, precision: int | None, value: Any) -> str:
    value = None if value is NO_VALUE else plain(value)
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if verb == "v":
        return text(value)
    if verb == "s" and not isinstance(value, bool | int | float):
        shown = text(value)
        return shown if precision is None else shown[:precision]
    if verb == "q" and isinstance(value, str):
        return _quote(value)
    if verb == "q" and is_int:
        return "'" + _quote(chr(value))[1:-1].replace("'", "\\'") + "'"
    if verb == "t" and isinstance(value, bool):
        return text(value)
    if verb in "dxXob" and is_int:
        return _integer(verb, flags, value)
    if verb in "xX" and isinstance(value, str):
        hexed = value.encode().hex()
        return hexed.upper() if verb == "X" else hexed
    if verb == "c" and is_int:
        return chr(value)
    if verb in "fFeEgG" and isinstance(value, float):
        return _float(verb, flags, precision, value)
    return f"%!{verb}({go_type(value)}={text(value)})"


def _integer(verb: str, flags: str, value: int) -> str:
    body = format(abs(value), {"d": "d", "x": "x", "X": "X", "o": "o", "b": "b"}[verb])
    if "#" in flags and verb in "xX":
        body = "0" + verb + body
    sign = "-" if value < 0 else "+" if "+" in flags else " " if " " in flags else ""
    return sign + body


def _float(verb: str, flags: str, precision: int | None, value: float) -> str:
    sign = "+" if "+" in flags else " " if " " in flags else ""
    if verb in "gG" and precision is None:
        body = _shortest_g(value)
        body = body.upper() if verb == "G" else body
        return (sign + body) if value >= 0 else body
    spec = f"{sign}.{6 if precision is None else precision}{verb}"
    return format(value, spec)


def _shortest_g(value: float) -> str:
    """Go's ``%g`` with no precision: the shortest digits, an exponent below 1e-4 or from 1e+06."""
    if math.isinf(value) or math.isnan(value):
        return "NaN" if math.isnan(value) else "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "-0" if math.copysign(1, value) < 0 else "0"
    sign, digit_tuple, exp = Decimal(repr(value)).normalize().as_tuple()
    assert isinstance(exp, int)
    digits = "".join(map(str, digit_tuple))
    point = len(digits) + exp  # where the decimal point goes among the digits
    minus = "-" if sign else ""
    if point - 1 < -4 or point - 1 >= 6:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{minus}{mantissa}e{'+' if point >= 1 else '-'}{abs(point - 1):02d}"
    if point <= 0:
        return f"{minus}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return minus + digits + "0" * (point - len(digits))
    return f"{minus}{digits[:point]}.{digits[point:]}"


_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_ESCAPES |= {"\v": "\\v", "\\": "\\\\", '"': '\\"'}


def _quote(value: str) -> str:
    """Go's ``strconv.Quote``: double quotes, Go's escapes, printable runes as they are."""
    out = []
    for char in value:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif char.isprintable() or char == " ":
            out.append(char)
        elif ord(char) < 0x80:
            out.append(f"\\x{ord(char):02x}")
        elif ord(char) <= 0xFFFF:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    return '"' + "".join(out) + '"'


def table(lines: list[list[str]]) -> str:
    """Cells aligned as Docker's tab writer aligns them (Go's ``text/tabwriter`` with minimum
    width 10 and padding 3): each column as wide as its widest cell plus 3, at least 10; a
    line's last cell is not padded, and lines end without trailing spaces.

    A column spans a run of adjacent lines that have a cell in it (not counting each line's
    last); a line with fewer cells ends the run, as in Go.
    """
    out = [""] * len(lines)
    _columns(lines, out, [], 0, len(lines))
    return "\n".join(line.rstrip(" ") for line in out)


def _columns(
    lines: list[list[str]], out: list[str], widths: list[int], start: int, stop: int
) -> None:
    column = len(widths)
    first = start
    this = start
    while this < stop:
        if column >= len(lines[this]) - 1:
            this += 1
            continue
        _write(lines, out, widths, first, this)
        first = this
        width = _MIN_WIDTH
        while this < stop and column < len(lines[this]) - 1:
            width = max(width, len(lines[this][column]) + _PADDING)
            this += 1
        _columns(lines, out, [*widths, width], first, this)
        first = this
    _write(lines, out, widths, first, stop)


def _write(
    lines: list[list[str]], out: list[str], widths: list[int], start: int, stop: int
) -> None:
    for i in range(start, stop):
        cells = lines[i]
        out[i] = "".join(
            cell.ljust(widths[j]) if j < len(widths) else cell for j, cell in enumerate(cells)
        )


_MIN_WIDTH = 10
_PADDING = 3
