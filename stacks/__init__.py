"""Stack files: Compose files with a ``deploy:`` section, as ``docker stack deploy`` reads them.

``load_stack`` parses, substitutes variables, checks, merges and converts them to service
specs, with every problem reported by file, line, column and key path. Nothing here talks to
the network, Docker or MQTT.
"""

from stacks.convert import (
    MAX_CONFIG_BYTES,
    MAX_SECRET_BYTES,
    load_stack,
    load_stack_text,
    validate_stack_name,
)
from stacks.dotenv import parse_dotenv
from stacks.errors import StackError, StackErrors, StackWarning
from stacks.interpolate import TemplateError, substitute
from stacks.model import (
    ConfigSpec,
    IPAMConfig,
    IPAMSpec,
    NetworkSpec,
    SecretSpec,
    StackSpec,
    VolumeSpec,
)
from stacks.services import LABEL_IMAGE, LABEL_NAMESPACE

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
