"""The `shoal` command line: Docker's nouns, verbs and flags, so Swarm users need no new habits.

`main` builds the parser and dispatches; `swarm`, `nodes`, `services`, `secrets`, `stacks` and
`networks` each add one group of commands to it; `createflags` and `updateflags` (with
`sharedflags`) turn `service create|update` flags into a ServiceSpec; `convergence` follows a
service until it converges. `output` (tables, JSON, templates, error lines) and `flagvalues`
(what a flag's text means) import no other module of the CLI, and no module of the CLI
imports the manager: the CLI's imports form no cycle.
"""
