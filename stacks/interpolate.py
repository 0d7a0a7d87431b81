"""Variable substitution in stack files, as Compose does it.

Supported forms: ``$VAR``, ``${VAR}``, ``${VAR:-default}`` (unset or empty), ``${VAR-default}``
(unset), ``${VAR:?error}``, ``${VAR?error}``, ``${VAR:+replacement}``, ``${VAR+replacement}``
and ``$$`` for a literal ``$``. Defaults and replacements may themselves contain variables.
Values are substituted, never keys. Variables come from a mapping the caller passes in; this
module never reads the process environment.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import replace

from stacks.errors import StackError, StackWarning
from stacks.node import Node

__all__ = ["TemplateError", "interpolate", "substitute"]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPERATORS = (":-", ":?", ":+", "-", "?", "+")


class TemplateError(Exception):
    """A template is malformed, or a required variable is missing (``message`` says which)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _invalid(template: str) -> TemplateError:
    return TemplateError(
        f'invalid interpolation format: "{template}"; you may need to escape any $ with another $'
    )


def substitute(
    template: str,
    lookup: Callable[[str], str | None],
    on_unset: Callable[[str], None] = lambda name: None,
) -> str:
    """Expand the variables in ``template``; ``lookup`` returns None for an unset variable."""
    return _Substitution(template, lookup, on_unset).expand(template)


class _Substitution:
    def __init__(
        self, template: str, lookup: Callable[[str], str | None], on_unset: Callable[[str], None]
    ) -> None:
        self.template = template
        self.lookup = lookup
        self.on_unset = on_unset

    def expand(self, text: str) -> str:
        out: list[str] = []
        i = 0
        while i < len(text):
            dollar = text.find("$", i)
            if dollar < 0:
                out.append(text[i:])
                break
            out.append(text[i:dollar])
            following = text[dollar + 1 : dollar + 2]
            if following == "$":
                out.append("$")
                i = dollar + 2
            elif following == "{":
                end = _closing_brace(text, dollar + 2)
                if end < 0:
                    raise _invalid(self.template)
                out.append(self.braced(text[dollar + 2 : end]))
                i = end + 1
            else:
                match = _NAME.match(text, dollar + 1)
                if match is None:
                    raise _invalid(self.template)
                out.append(self.plain(match.group()))
                i = match.end()
        return "".join(out)

    def plain(self, name: str) -> str:
        value = self.lookup(name)
        if value is None:
            self.on_unset(name)
            return ""
        return value

    def braced(self, body: str) -> str:
        match = _NAME.match(body)
        if match is None:
            raise _invalid(self.template)
        name, rest = match.group(), body[match.end() :]
        if not rest:
            return self.plain(name)
        operator = next((op for op in _OPERATORS if rest.startswith(op)), None)
        if operator is None:
            raise _invalid(self.template)
        argument = rest[len(operator) :]
        value = self.lookup(name)
        present = value is not None and (value != "" or not operator.startswith(":"))
        if operator in (":-", "-"):
            return value if present and value is not None else self.expand(argument)
        if operator in (":+", "+"):
            return self.expand(argument) if present else ""
        if not present or value is None:
            reason = self.expand(argument)
            message = f"required variable {name} is missing a value"
            raise TemplateError(f"{message}: {reason}" if reason else message)
        return value


def _closing_brace(text: str, start: int) -> int:
    depth = 1
    i = start
    while i < len(text):
        if text.startswith("$$", i):
            i += 2
            continue
        if text.startswith("${", i):
            depth += 1
            i += 2
            continue
        if text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def interpolate(
    root: Node,
    environ: Mapping[str, str],
    errors: list[StackError],
    warnings: list[StackWarning],
) -> Node:
    """Substitute variables in every string value of ``root``; problems go to the lists."""

    def walk(node: Node, path: str) -> Node:
        if isinstance(node.value, dict):
            return node.with_value(
                {k: walk(v, f"{path}.{k}" if path else k) for k, v in node.value.items()}
            )
        if isinstance(node.value, list):
            return node.with_value([walk(v, f"{path}[{i}]") for i, v in enumerate(node.value)])
        if not isinstance(node.value, str) or "$" not in node.value:
            return node

        def unset(name: str) -> None:
            warnings.append(
                node.warning(
                    path, f'The "{name}" variable is not set. Defaulting to a blank string.'
                )
            )

        try:
            return node.with_value(substitute(node.value, environ.get, unset))
        except TemplateError as exc:
            errors.append(node.error(path, exc.message))
            return replace(node, tag="invalid")

    return walk(root, "")
