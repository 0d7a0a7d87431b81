"""``.env`` and ``env_file`` parsing with Compose's quoting rules.

* ``KEY=value``, optionally prefixed by ``export``; blank lines and ``# comments`` skipped.
* Unquoted values are trimmed and end at `` #`` (a ``#`` after whitespace starts a comment).
* ``'single quoted'`` values are taken literally and may span lines.
* ``"double quoted"`` values may span lines and understand ``\\n \\r \\t \\" \\\\ \\$``.
* Unquoted and double-quoted values expand ``${VAR}`` forms, looking in ``environ`` first and
  then at keys defined earlier in the file.
* A bare ``KEY`` takes its value from ``environ`` and is skipped when ``environ`` lacks it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from stacks.errors import StackError
from stacks.interpolate import TemplateError, substitute

__all__ = ["parse_dotenv"]

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\", "$": "$$"}


def parse_dotenv(text: str, filename: str, environ: Mapping[str, str]) -> dict[str, str]:
    """Parse dotenv ``text``; a malformed line is a StackError naming ``filename`` and line."""
    return _Parser(text, filename, environ).parse()


class _Parser:
    def __init__(self, text: str, filename: str, environ: Mapping[str, str]) -> None:
        self.text = text.replace("\r\n", "\n")
        self.filename = filename
        self.environ = environ
        self.values: dict[str, str] = {}
        self.pos = 0
        self.line = 1

    def error(self, message: str, line: int | None = None) -> StackError:
        return StackError(message, file=self.filename, line=line or self.line)

    def parse(self) -> dict[str, str]:
        while self.pos < len(self.text):
            end = self.text.find("\n", self.pos)
            end = len(self.text) if end < 0 else end
            raw = self.text[self.pos : end]
            stripped = raw.strip()
            if not stripped or stripped.startswith("#"):
                self.advance(end + 1)
                continue
            self.entry(stripped, raw)
        return self.values

    def advance(self, to: int) -> None:
        self.line += self.text.count("\n", self.pos, min(to, len(self.text)))
        self.pos = to

    def entry(self, stripped: str, raw: str) -> None:
        if stripped.startswith("export ") or stripped.startswith("export\t"):
            stripped = stripped[len("export") :].lstrip()
        key, sep, _ = stripped.partition("=")
        key = key.strip()
        if not _KEY.fullmatch(key):
            raise self.error(f"expected KEY=VALUE, found {stripped[:60]!r}")
        line_end = self.pos + len(raw)
        if not sep:
            if key in self.environ:
                self.values[key] = self.environ[key]
            self.advance(line_end + 1)
            return
        start = self.pos + raw.index("=") + 1
        while start < line_end and self.text[start] in " \t":
            start += 1
        quote = self.text[start : start + 1]
        if quote in ("'", '"'):
            value, after = self.quoted(start, quote)
        else:
            value, after = self.unquoted(start, line_end), line_end
        self.values[key] = value
        self.advance(after + 1)

    def quoted(self, start: int, quote: str) -> tuple[str, int]:
        line = self.line
        i = start + 1
        chars: list[str] = []
        while i < len(self.text):
            c = self.text[i]
            if c == quote:
                break
            if c == "\\" and quote == '"' and i + 1 < len(self.text):
                chars.append(_ESCAPES.get(self.text[i + 1], "\\" + self.text[i + 1]))
                i += 2
                continue
            chars.append(c)
            i += 1
        else:
            raise self.error(f"missing closing {quote} for the value that starts here", line)
        end = self.text.find("\n", i)
        end = len(self.text) if end < 0 else end
        trailing = self.text[i + 1 : end].strip()
        if trailing and not trailing.startswith("#"):
            raise self.error(f"unexpected text after the closing {quote}: {trailing[:40]!r}", line)
        value = "".join(chars)
        return (value if quote == "'" else self.expand(value, line)), end

    def unquoted(self, start: int, end: int) -> str:
        value = self.text[start:end]
        comment = re.search(r"\s#", value)
        if comment:
            value = value[: comment.start()]
        return self.expand(value.strip(), self.line)

    def expand(self, value: str, line: int) -> str:
        def lookup(name: str) -> str | None:
            return self.environ.get(name, self.values.get(name))

        try:
            return substitute(value, lookup)
        except TemplateError as exc:
            raise self.error(exc.message, line) from exc
