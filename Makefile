# scim-platform: `make help` lists the targets.
# Python 3.11: python3.11 if present, else python3 (checked below).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null || \
		{ echo "need Python 3.11 (try: make PYTHON=/path/to/python3.11)"; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install the project with its dev tools

run: $(STAMP) ## migrate, ensure the demo tenant, print its Tenant URL and a Secret Token, serve
	$(BIN)/scim-platform serve --demo

test: $(STAMP) ## run the whole suite against a real PostgreSQL (and Redis, and Chromium)
	bash tests/support/ensure_redis.sh
	bash tests/support/ensure_chromium.sh
	$(BIN)/python -m pytest

lint: $(STAMP) ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP) ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: $(STAMP) ## mypy --strict
	$(BIN)/mypy

bench: $(STAMP) ## load benchmark vs the asyncpg floor and scim2-server (ARGS=--quick: 2 min)
	$(BIN)/python -m tests.bench $(ARGS)

bench-quick: $(STAMP) ## the 2-minute smoke run of the benchmark that CI runs
	$(BIN)/python -m tests.bench --quick $(ARGS)

migrate: $(STAMP) ## upgrade the control plane and every tenant schema
	$(BIN)/scim-platform migrate

clean: ## remove the virtual environment and caches (keeps .data)
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

.PHONY: help install run test lint format typecheck bench bench-quick migrate clean
