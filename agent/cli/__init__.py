"""The `shoal` command line: Docker's nouns, verbs and flags, so Swarm users need no new habits.

`main` builds the parser and dispatches; `services`, `networks`, `secrets` and `stacks` add
their commands to it; `convergence` follows a service until it converges. `output` (tables,
JSON, templates, error lines) and `flagvalues` (what a flag's text means) import no other
module of the CLI, so the CLI has no import cycle.
"""
