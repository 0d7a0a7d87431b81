"""`python -m agent.cli`: the shoal command line."""

from agent.cli.main import main

raise SystemExit(main())
