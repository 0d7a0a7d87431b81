"""Errors and warnings about stack files, located by file, line, column and key path."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from agent.model.spec import Spec

__all__ = ["StackError", "StackErrors", "StackWarning"]


def _where(file: str | None, line: int | None, column: int | None, path: str | None) -> str:
    parts = []
    if file:
        location = file
        if line is not None:
            location += f":{line}"
            if column is not None:
                location += f":{column}"
        parts.append(location)
    if path:
        parts.append(path)
    return "".join(f"{p}: " for p in parts)


class StackError(Exception):
    """A stack file cannot be deployed as written; the message says where and why.

    ``str(error)`` reads like ``stack.yml:12:7: services.web.deploy.replicas: expected an
    integer, found 'three'``; ``message`` is only the part after the key path.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        column: int | None = None,
        path: str | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.column = column
        self.path = path
        super().__init__(_where(file, line, column, path) + message)

    @property
    def errors(self) -> tuple[StackError, ...]:
        """Every problem found: this one alone, or all of them for :class:`StackErrors`."""
        return (self,)


class StackErrors(StackError):
    """Several problems, all reported at once; ``str()`` puts one per line."""

    def __init__(self, errors: Iterable[StackError]) -> None:
        flat: list[StackError] = []
        for error in errors:
            flat.extend(error.errors)
        if not flat:
            raise ValueError("StackErrors needs at least one error")
        first = flat[0]
        super().__init__(
            first.message, file=first.file, line=first.line, column=first.column, path=first.path
        )
        self._errors = tuple(flat)
        self.args = ("\n".join(str(e) for e in flat),)

    @property
    def errors(self) -> tuple[StackError, ...]:
        return self._errors

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self._errors)


@dataclass(frozen=True, slots=True)
class StackWarning(Spec):
    """Something in the files that shoal ignores or guesses; never fails a deploy."""

    message: str
    file: str | None = None
    line: int | None = None
    column: int | None = None
    path: str | None = None

    def __str__(self) -> str:
        return _where(self.file, self.line, self.column, self.path) + self.message
