"""A stack as the CLI sends it to its node's daemon: JSON, secret and config data in base64."""

from __future__ import annotations

import base64
from typing import Any

from stacks.model import StackSpec

__all__ = ["encode_stack"]


def encode_stack(stack: StackSpec) -> dict[str, Any]:
    """The stack for the control socket (JSON): secret and config data in base64."""
    doc = stack.to_dict()
    for key in ("secrets", "configs"):
        for item in doc[key]:
            item["data"] = base64.b64encode(item["data"]).decode()
    doc["warnings"] = []
    return doc
