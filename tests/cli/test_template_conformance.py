"""Docker's documented --format templates give Docker's output: the cases are in
template_conformance.yaml, each with its source, its data and the exact expected output."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.cli.output import render
from agent.cli.template import Template
from agent.model.errors import ShoalError

CASES: list[dict[str, Any]] = yaml.safe_load(
    (Path(__file__).parent / "template_conformance.yaml").read_text()
)


def _run(case: dict[str, Any]) -> str:
    if "columns" in case:
        columns = [(title, key) for title, key in case["columns"]]
        return render(case["rows"], columns, case["template"])
    template = Template(case["template"], missingkey=case.get("missingkey", "fields"))
    return template.render_all(case["rows"])


def test_the_conformance_file_has_forty_cases_with_distinct_names_and_sources() -> None:
    names = [case["name"] for case in CASES]
    assert len(names) >= 40
    assert len(set(names)) == len(names)
    assert all(case["source"].startswith("https://") for case in CASES)
    assert all(("expected" in case) != ("error" in case) for case in CASES)


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_documented_template_gives_dockers_output(case: dict[str, Any]) -> None:
    if "error" in case:
        with pytest.raises(ShoalError) as err:
            _run(case)
        assert str(err.value) == case["error"]
    else:
        assert _run(case) == case["expected"]
