.PHONY: run test test-fast lint
run:
	scripts/run
test:
	scripts/test
test-fast:
	scripts/test -m 'not slow'
lint:
	.venv/bin/ruff check . && .venv/bin/mypy
