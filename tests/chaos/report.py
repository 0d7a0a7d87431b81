"""The chaos suite's summary: every chaos test records one row per fault it injected, and the
run ends with one table of them (and, when SHOAL_CHAOS_REPORT names a file, the rows as JSON).

Columns: the fault, how many times it was injected, acknowledged writes, acknowledged writes
found afterwards, duplicates, tasks replaced that had kept running, seconds to converge."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field

__all__ = ["ChaosReport", "Row"]


@dataclass
class Row:
    fault: str
    injected: int = 0
    acked: int | None = None
    found: int | None = None
    duplicates: int | None = None
    needlessly_replaced: int | None = None
    converge_s: float | None = None
    note: str = ""


@dataclass
class ChaosReport:
    rows: list[Row] = field(default_factory=list)

    def record(self, fault: str, **figures: object) -> Row:
        row = Row(fault=fault, **figures)  # type: ignore[arg-type]
        self.rows.append(row)
        return row

    def table(self) -> list[str]:
        head = ("fault", "injected", "acked", "found", "dups", "replaced", "converge s", "note")
        cells = [head] + [
            (
                r.fault,
                str(r.injected),
                _cell(r.acked),
                _cell(r.found),
                _cell(r.duplicates),
                _cell(r.needlessly_replaced),
                "-" if r.converge_s is None else f"{r.converge_s:.2f}",
                r.note,
            )
            for r in self.rows
        ]
        widths = [max(len(row[i]) for row in cells) for i in range(len(head))]
        return ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]

    def write(self) -> None:
        path = os.environ.get("SHOAL_CHAOS_REPORT")
        if path:
            with open(path, "w", encoding="utf-8") as f:
                json.dump([asdict(r) for r in self.rows], f, indent=2)


def _cell(value: int | None) -> str:
    return "-" if value is None else str(value)
