"""Where the test corpus and the shipped example stacks live."""

from pathlib import Path

CORPUS = Path(__file__).parent / "corpus"
VALID = CORPUS / "valid"
INVALID = CORPUS / "invalid"
EXAMPLES = Path(__file__).parents[2] / "stacks" / "examples"
