# Varta: everyday tasks. Needs only python3 (>= 3.11); uv is installed into build/uv when it is not on PATH.
#
#   make demo      run broker + central + simulated nodes on this machine (http://127.0.0.1:8080/)
#   make test      lint, type-check, then run the test suite
#   make help      list every target

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_BOOTSTRAP := build/uv
UV ?= $(or $(shell command -v uv 2>/dev/null),$(UV_BOOTSTRAP)/bin/uv)
PORT ?= 8080
PYTEST_ARGS ?=

# Use the Python already on this machine; never download one.
export UV_PYTHON_DOWNLOADS := never

.PHONY: help sync demo test lint fmt asyncapi bench

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(UV_BOOTSTRAP)/bin/uv:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
		|| { echo "Varta needs Python 3.11 or newer; $(PYTHON) is $$($(PYTHON) -V 2>&1)" >&2; exit 1; }
	@echo "uv not found: installing it into $(UV_BOOTSTRAP)"
	@$(PYTHON) -m venv $(UV_BOOTSTRAP) \
		|| { echo "cannot create a virtualenv: install python3-venv (apt-get install python3-venv)" >&2; exit 1; }
	$(UV_BOOTSTRAP)/bin/pip install --quiet --disable-pip-version-check uv

sync: $(UV) ## create/update .venv exactly as uv.lock says (all extras, dev tools)
	$(UV) sync --frozen --all-extras

demo: sync ## run the demo: broker, central and simulated edge nodes (PORT=8080)
	$(BIN)/varta demo --port $(PORT)

lint: sync ## ruff check, ruff format --check, mypy --strict
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

fmt: sync ## apply ruff's formatting and safe fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint ## lint, then the whole test suite (PYTEST_ARGS="-k acl" to narrow it)
	$(BIN)/pytest -p no:cacheprovider $(PYTEST_ARGS)

asyncapi: sync ## regenerate docs/asyncapi.yaml from varta/contract.py
	$(BIN)/python -m varta.asyncapi

bench: sync ## run every benchmark in bench/
	@shopt -s nullglob; scripts=(bench/[!_]*.py); \
	if (( $${#scripts[@]} == 0 )); then echo "no benchmarks in bench/" >&2; exit 1; fi; \
	for script in "$${scripts[@]}"; do \
		name=$$(basename "$$script" .py); echo "== bench/$$name"; \
		$(BIN)/python -m "bench.$$name"; \
	done
