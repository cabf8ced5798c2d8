# meter-gateway: `make demo` runs it, `make test` checks it. Both work on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint rules system-deps postgres bench clean

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

test: system-deps $(STAMP) postgres lint rules
	$(BIN)/python -m pytest -q -p no:cacheprovider

# The alerting rules operators install (deploy/prometheus/, README "Alerts").
rules: system-deps
	cd deploy/prometheus && promtool check rules alerts.yml && promtool test rules alerts-test.yml alerts-test-busy-hours.yml

bench: $(STAMP) postgres
	$(BIN)/python -m load_tests

clean:
	rm -rf $(VENV) var *.egg-info
