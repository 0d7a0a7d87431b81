"""What the CLI prints: listings and inspections for people (aligned tables) and for scripts
(JSON, templates), and its error lines.

``--format`` takes what Docker's does: ``json`` for one JSON object per line, or a Go-template
subset: ``{{.Name}}``, nested ``{{.Spec.Name}}``, ``{{json .}}``, ``{{upper .Name}}``,
``{{index .Labels "a.b"}}``, pipes (``{{.Name | lower}}``), ``\\t`` and ``\\n`` escapes, and a
leading ``table`` that adds a header row and aligns tab-separated columns. A field is found
under its own name, in snake_case or in lowerCamelCase, so ``{{.CurrentState}}`` reads the key
``current_state`` and ``{{.TimeNano}}`` the key ``timeNano``. Results carry no trailing
newline.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import json
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, TypeVar

from agent.model.errors import ShoalError

__all__ = [
    "Template",
    "for_each",
    "format_inspect",
    "inspect_json",
    "plain",
    "print_error",
    "render",
    "table",
]

T = TypeVar("T")


def render(
    rows: list[dict[str, Any]],
    columns: list[tuple[str, str]],
    fmt: str | None = None,
    quiet_key: str | None = None,
    quiet: bool = False,
) -> str:
    """``rows`` as a table of ``columns`` (HEADER, key), ids only, JSON lines or a template."""
    if quiet:
        if quiet_key is None:
            raise ValueError("quiet output needs a quiet_key")
        return "\n".join(_text(row.get(quiet_key)) for row in rows)
    if fmt is None or fmt.strip() in ("", "table"):
        header = [title for title, _ in columns]
        return table([header, *([_text(row.get(key)) for _, key in columns] for row in rows)])
    if fmt.strip() == "json":
        return "\n".join(_json(row) for row in rows)
    template = Template(fmt, headers={key: title for title, key in columns})
    return template.render_all(rows)


def inspect_json(objs: Sequence[Any]) -> str:
    """Docker's ``inspect`` output: a JSON array indented by four spaces."""
    return json.dumps([plain(obj) for obj in objs], indent=4, ensure_ascii=False)


def format_inspect(objs: Sequence[Any], fmt: str | None) -> str:
    """``inspect --format``: the template applied to each object, one result per line."""
    if fmt is None or fmt.strip() in ("", "json"):
        return inspect_json(objs)
    return Template(fmt).render_all([plain(obj) for obj in objs])


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


def _json(value: Any) -> str:
    return json.dumps(plain(value), separators=(",", ":"), ensure_ascii=False)


def _text(value: Any) -> str:
    """How a value prints in a table cell or a template: Go's ``%v``, but None is empty."""
    value = plain(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e21 else repr(value)
    if isinstance(value, Mapping):
        return "map[" + " ".join(f"{k}:{_text(v)}" for k, v in sorted(value.items())) + "]"
    if isinstance(value, list | tuple):
        return "[" + " ".join(_text(v) for v in value) + "]"
    return str(value)


def table(lines: list[list[str]]) -> str:
    """Cells padded to their column's width, 3 spaces apart; a line's last cell is not padded.

    The first line is the header, when there is one; lines may have fewer cells than others.
    """
    widths: list[int] = []
    for cells in lines:
        for i, cell in enumerate(cells[:-1]):
            if i == len(widths):
                widths.append(0)
            widths[i] = max(widths[i], len(cell))
    out = []
    for cells in lines:
        padded = [cell.ljust(widths[i]) for i, cell in enumerate(cells[:-1])] + cells[-1:]
        out.append("   ".join(padded).rstrip())
    return "\n".join(out)


def human_duration(seconds: float) -> str:
    """How long, as Docker words it in listings ("2 minutes", "About an hour", "3 days")."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s < 60:
        return f"{s} second{'s' if s != 1 else ''}"
    minutes = s // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = round(s / 3600)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 14:
        return f"{hours // 24} days"
    if hours < 24 * 60:
        return f"{hours // (24 * 7)} weeks"
    if hours < 24 * 730:
        return f"{hours // (24 * 30)} months"
    return f"{s // (3600 * 24 * 365)} years"


def print_error(message: object) -> None:
    """A problem, on stderr, as every command reports one: ``Error: ...``."""
    print(f"Error: {message}", file=sys.stderr)


def for_each(items: Iterable[T], action: Callable[[T], object]) -> int:
    """``action`` on every item, each failure reported and the rest still done: 1 if any failed."""
    failed = 0
    for item in items:
        try:
            action(item)
        except ShoalError as exc:
            print_error(exc)
            failed += 1
    return 1 if failed else 0


# templates ---------------------------------------------------------------------------------
_FUNCTIONS: dict[str, tuple[int, Callable[..., Any]]] = {
    "json": (1, _json),
    "upper": (1, lambda v: _text(v).upper()),
    "lower": (1, lambda v: _text(v).lower()),
    "title": (1, lambda v: _text(v).title()),
    "len": (1, lambda v: len(v) if isinstance(v, Mapping | list | tuple | str) else 0),
    "join": (2, lambda items, sep: _text(sep).join(_text(i) for i in items or ())),
    "split": (2, lambda text, sep: _text(text).split(_text(sep))),
    "truncate": (2, lambda text, n: _text(text)[: int(n)]),
    "index": (2, lambda items, key: _index(items, key)),
}


def _index(items: Any, key: Any) -> Any:
    """Go's ``index``: a map's value (none for a missing key) or a list's item."""
    if isinstance(items, Mapping):
        return items.get(key)
    if isinstance(items, list | tuple) and isinstance(key, int) and -len(items) <= key < len(items):
        return items[key]
    raise ShoalError(f"template: index of {key!r}: not a key or an index of that value")


_TOKEN = re.compile(
    r"""\s*(?:
        (?P<field>(?:\.[A-Za-z_][A-Za-z0-9_]*)+|\.)
      | (?P<string>"(?:[^"\\]|\\.)*"|`[^`]*`)
      | (?P<number>-?\d+)
      | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<pipe>\|)
    )""",
    re.VERBOSE,
)


@dataclass(frozen=True, slots=True)
class _Arg:
    kind: str  # "field", "literal" or "name"
    value: Any
    at: int  # offset of the argument in the template


@dataclass(frozen=True, slots=True)
class _Action:
    commands: tuple[tuple[_Arg, ...], ...]  # a pipeline: each command's result feeds the next
    at: int


def _snake(name: str) -> str:
    """``CurrentState`` to ``current_state``, ``NodeID`` to ``node_id``."""
    name = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    return re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name).lower()


def _header(name: str) -> str:
    """``CurrentState`` or ``current_state`` to ``CURRENT STATE``, as Docker's headers read."""
    return _snake(name).replace("_", " ").upper()


class Template:
    """A parsed ``--format`` template; a ``table`` template also has a header row."""

    def __init__(self, fmt: str, headers: Mapping[str, str] | None = None) -> None:
        text = fmt.replace("\\t", "\t").replace("\\n", "\n")
        self.table = text == "table" or text.startswith("table ")
        self.text = text[6:] if text.startswith("table ") else text
        self.headers = dict(headers or {})
        self.parts = self._parse(self.text)

    def render_all(self, rows: Sequence[Any]) -> str:
        outputs = [self.execute(row) for row in rows]
        if not self.table:
            return "\n".join(outputs)
        lines = [self.header(), *outputs]
        return table([line.split("\t") for text in lines for line in text.split("\n")])

    def header(self) -> str:
        out = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            fields = [a for command in part.commands for a in command if a.kind == "field"]
            path = fields[0].value if fields else ()
            out.append(self._title(path))
        return "".join(out)

    def _title(self, path: tuple[str, ...]) -> str:
        if not path:
            return ""
        if len(path) == 1:
            for key in (path[0], _snake(path[0])):
                if key in self.headers:
                    return self.headers[key]
        return _header(path[-1])

    def execute(self, row: Any) -> str:
        out = []
        for part in self.parts:
            out.append(part if isinstance(part, str) else _text(self._pipeline(part, row)))
        return "".join(out)

    # parsing
    def _error(self, at: int, message: str) -> ShoalError:
        line = self.text.count("\n", 0, at) + 1
        return ShoalError(f"template: :{line}: {message}")

    def _parse(self, text: str) -> list[str | _Action]:
        parts: list[str | _Action] = []
        pos = 0
        while (start := text.find("{{", pos)) >= 0:
            end = text.find("}}", start + 2)
            if end < 0:
                raise self._error(start, "unclosed action")
            body_start, body_end = start + 2, end
            literal = text[pos:start]
            if text.startswith("-", body_start) and text[body_start + 1 : body_start + 2].isspace():
                literal, body_start = literal.rstrip(), body_start + 1
            trim_after = text[body_end - 1 : body_end] == "-" and text[body_end - 2].isspace()
            if trim_after:
                body_end -= 1
            parts.append(literal)
            parts.append(self._action(text, body_start, body_end))
            pos = end + 2
            if trim_after:
                while pos < len(text) and text[pos].isspace():
                    pos += 1
        parts.append(text[pos:])
        return [p for p in parts if p != ""]

    def _action(self, text: str, start: int, end: int) -> _Action:
        commands: list[tuple[_Arg, ...]] = []
        command: list[_Arg] = []
        pos = start
        while text[pos:end].strip():
            match = _TOKEN.match(text, pos, end)
            if match is None:
                bad = text[pos:end].strip()[:1]
                raise self._error(pos, f'unexpected "{bad}" in command')
            at = match.start(match.lastgroup or 0)
            token = match.group(match.lastgroup or 0)
            if match.lastgroup == "pipe":
                if not command:
                    raise self._error(at, "missing command before |")
                commands.append(tuple(command))
                command = []
            elif match.lastgroup == "field":
                path = tuple(token.split(".")[1:]) if token != "." else ()
                command.append(_Arg("field", path, at))
            elif match.lastgroup == "string":
                try:
                    value = token[1:-1] if token[0] == "`" else json.loads(token)
                except ValueError:
                    raise self._error(at, f"malformed string {token}") from None
                command.append(_Arg("literal", value, at))
            elif match.lastgroup == "number":
                command.append(_Arg("literal", int(token), at))
            else:
                if token not in _FUNCTIONS:
                    raise self._error(at, f'function "{token}" not defined')
                command.append(_Arg("name", token, at))
            pos = match.end()
        if not command:
            raise self._error(start, "missing value for command")
        commands.append(tuple(command))
        for i, (head, *rest) in enumerate(commands):
            if head.kind != "name" and (rest or i):
                raise self._error(head.at, f"can't give argument to non-function {_show(head)}")
            for arg in rest:
                if arg.kind == "name":
                    raise self._error(arg.at, f"function {arg.value!r} used as an argument")
        return _Action(tuple(commands), start)

    # execution
    def _pipeline(self, action: _Action, row: Any) -> Any:
        result: Any = None
        for i, command in enumerate(action.commands):
            piped = (result,) if i else ()
            result = self._command(command, row, piped)
        return result

    def _command(self, command: tuple[_Arg, ...], row: Any, piped: tuple[Any, ...]) -> Any:
        head, *rest = command
        if head.kind != "name":
            return self._value(head, row)
        arity, function = _FUNCTIONS[head.value]
        args = [self._value(arg, row) for arg in rest] + list(piped)
        if len(args) != arity:
            raise self._at(
                head,
                head.value,
                f"wrong number of args for {head.value}: want {arity} got {len(args)}",
            )
        return function(*args)

    def _value(self, arg: _Arg, row: Any) -> Any:
        if arg.kind == "literal":
            return arg.value
        value = row
        for depth, name in enumerate(arg.value):
            shown = "." + ".".join(arg.value[: depth + 1])
            if not isinstance(value, Mapping):
                raise self._at(arg, shown, f"can't evaluate field {name} in {_kind(value)}")
            key = _lookup(value, name)
            if key is None:
                raise self._at(arg, shown, f'map has no entry for key "{name}"')
            value = value[key]
        return value

    def _at(self, arg: _Arg, shown: str, message: str) -> ShoalError:
        line_start = self.text.rfind("\n", 0, arg.at) + 1
        line = self.text.count("\n", 0, arg.at) + 1
        return ShoalError(
            f'template: :{line}:{arg.at - line_start}: executing "" at <{shown}>: {message}'
        )


def _lookup(mapping: Mapping[str, Any], name: str) -> str | None:
    for key in (name, _snake(name), name[:1].lower() + name[1:]):
        if key in mapping:
            return key
    return None


def _kind(value: Any) -> str:
    return "a null value" if value is None else f"a value of type {type(value).__name__}"


def _show(arg: _Arg) -> str:
    if arg.kind == "field":
        return "." + ".".join(arg.value)
    return json.dumps(arg.value) if isinstance(arg.value, str) else str(arg.value)
