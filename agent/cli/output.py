"""What the CLI prints: listings and inspections for people (aligned tables) and for scripts
(JSON, templates), and its error lines.

``--format`` takes what Docker's does: ``json`` for one JSON object per line, ``table`` for the
default table, or a Go template (``agent.cli.template``). Results carry no trailing newline.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from agent.cli.gofmt import plain, table, text, to_json
from agent.model.errors import ShoalError

__all__ = [
    "for_each",
    "format_inspect",
    "human_duration",
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
    fields: Mapping[str, str] | None = None,
) -> str:
    """``rows`` as a table of ``columns`` (HEADER, key), ids only, JSON lines or a template.

    ``fields`` names Docker's template fields whose value is another key of the row (the
    value as the table shows it: ``{{.Status}}`` is ``Ready`` where the JSON says ``ready``).
    """
    if quiet:
        if quiet_key is None:
            raise ValueError("quiet output needs a quiet_key")
        return "\n".join(text(row.get(quiet_key)) for row in rows)
    if fmt is None or fmt.strip() in ("", "table"):
        header = [title for title, _ in columns]
        return table([header, *([text(row.get(key)) for _, key in columns] for row in rows)])
    if fmt.strip() == "json":
        return "\n".join(to_json(row) for row in rows)
    from agent.cli.template import Template

    template = Template(fmt, headers={key: title for title, key in columns})
    shown = dict(fields or {})
    views = [{**row, **{f: row.get(k) for f, k in shown.items()}} for row in rows]
    return template.render_all([plain(row) for row in views])


def inspect_json(objs: Sequence[Any]) -> str:
    """Docker's ``inspect`` output: a JSON array indented by four spaces."""
    return json.dumps([plain(obj) for obj in objs], indent=4, ensure_ascii=False)


def format_inspect(objs: Sequence[Any], fmt: str | None) -> str:
    """``inspect --format``: the template applied to each object, one result per line."""
    if fmt is None or fmt.strip() in ("", "json"):
        return inspect_json(objs)
    # inspect shapes leave empty fields out, as Docker's JSON does: a template naming one
    # prints <no value> instead of failing
    from agent.cli.template import Template

    return Template(fmt, missingkey="default").render_all([plain(obj) for obj in objs])


def human_duration(seconds: float) -> str:
    """A duration as Docker says it (``5 seconds``, ``About a minute``, ``3 months``)."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s < 60:
        return "1 second" if s == 1 else f"{s} seconds"
    minutes = s // 60
    if minutes < 60:
        return "About a minute" if minutes == 1 else f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds // 3600) // 24 // 365} years"


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
