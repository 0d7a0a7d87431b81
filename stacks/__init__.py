"""Stack files: Compose files with a ``deploy:`` section, as ``docker stack deploy`` reads them.

``load_stack`` parses, substitutes variables, checks, merges and converts them to service
specs, with every problem reported by file, line, column and key path. Nothing here talks to
the network, Docker or MQTT.
"""

import importlib
from typing import Any

# Names are imported on first use, so that `stacks.values` alone (the CLI's flag parsers) does
# not pull in YAML and the whole converter.
_HOME = {
    "MAX_CONFIG_BYTES": "stacks.convert",
    "MAX_SECRET_BYTES": "stacks.convert",
    "load_stack": "stacks.convert",
    "load_stack_text": "stacks.convert",
    "validate_stack_name": "stacks.convert",
    "parse_dotenv": "stacks.dotenv",
    "StackError": "stacks.errors",
    "StackErrors": "stacks.errors",
    "StackWarning": "stacks.errors",
    "TemplateError": "stacks.interpolate",
    "substitute": "stacks.interpolate",
    "ConfigSpec": "stacks.model",
    "IPAMConfig": "stacks.model",
    "IPAMSpec": "stacks.model",
    "NetworkSpec": "stacks.model",
    "SecretSpec": "stacks.model",
    "StackSpec": "stacks.model",
    "VolumeSpec": "stacks.model",
    "LABEL_IMAGE": "stacks.services",
    "LABEL_NAMESPACE": "stacks.services",
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'stacks' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)


__all__ = [
    "LABEL_IMAGE",
    "LABEL_NAMESPACE",
    "MAX_CONFIG_BYTES",
    "MAX_SECRET_BYTES",
    "ConfigSpec",
    "IPAMConfig",
    "IPAMSpec",
    "NetworkSpec",
    "SecretSpec",
    "StackError",
    "StackErrors",
    "StackSpec",
    "StackWarning",
    "TemplateError",
    "VolumeSpec",
    "load_stack",
    "load_stack_text",
    "parse_dotenv",
    "substitute",
    "validate_stack_name",
]
