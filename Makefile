# meter-gateway: `make demo` runs it, `make test` checks it. Both work on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint system-deps postgres bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

system-deps:
	bash scripts/system-deps.sh

postgres:
	bash scripts/ensure-postgres.sh

demo: $(STAMP)
	$(BIN)/meter-gateway demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy gateway adapters load_tests tests
	$(BIN)/lint-imports

test: system-deps $(STAMP) postgres lint
	$(BIN)/python -m pytest -q -p no:cacheprovider

bench: $(STAMP) postgres
	$(BIN)/python -m load_tests

clean:
	rm -rf $(VENV) var *.egg-info
