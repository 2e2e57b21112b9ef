# Two commands: `make up` (venv + install + start the stack) and `make test` (dev deps + full suite).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: up test install install-dev lint typecheck bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install -q -e '.[all]'

install-dev: $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'

up: install
	$(BIN)/sotp up

test: install-dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) data build *.egg-info
