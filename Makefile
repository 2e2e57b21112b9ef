# Two commands: `make up` (venv + locked install + start the stack) and `make test` (locked dev install + full suite).
# The locks (requirements/*.lock, every package with hashes) are what the project is tested with;
# `make lock` regenerates them from pyproject.toml's ranges, `make test-latest` tries the newest allowed versions.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.10
LOCK_ALL := requirements/all.lock
LOCK_DEV := requirements/dev.lock
LATEST_VENV := .venv-latest

.PHONY: up test test-random install install-dev lock test-latest lint typecheck clean agent-zipapp

$(BIN)/python:
	$(PY) -m venv $(VENV)

# Stamps make repeated `make up`/`make test` skip the install while the lock and pyproject.toml are unchanged.
$(VENV)/.installed-all: $(LOCK_ALL) pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --disable-pip-version-check --require-hashes -r $(LOCK_ALL)
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	@rm -f $(VENV)/.installed-dev
	@touch $@

$(VENV)/.installed-dev: $(LOCK_DEV) pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --disable-pip-version-check --require-hashes -r $(LOCK_DEV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $@ $(VENV)/.installed-all

install: $(VENV)/.installed-all

install-dev: $(VENV)/.installed-dev

up: install
	$(BIN)/sotp up

test: install-dev
	$(BIN)/python -m pytest -p no:randomly $(PYTEST_ARGS)

# The same suite in a random order (pytest-randomly; the seed is printed, -p randomly -p "randomly_seed=N" repeats it).
test-random: install-dev
	$(BIN)/python -m pytest -p randomly $(PYTEST_ARGS)

# Regenerate both locks from pyproject.toml (newest versions its ranges allow), for Python 3.11 on any platform.
# all.lock is constrained by dev.lock so `make up` and `make test` install the same versions.
lock: | $(BIN)/python
	$(BIN)/python -m pip install -q --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip compile -q pyproject.toml requirements/build.in --extra dev --generate-hashes --universal \
		--python-version 3.11 $(LOCK_ARGS) -o $(LOCK_DEV)
	$(BIN)/uv pip compile -q pyproject.toml requirements/build.in --extra all --generate-hashes --universal \
		--python-version 3.11 -c $(LOCK_DEV) -o $(LOCK_ALL)

# The suite on the newest versions pyproject.toml allows, in a separate venv: catches drift before users do.
test-latest:
	rm -rf $(LATEST_VENV)
	$(PY) -m venv $(LATEST_VENV)
	$(LATEST_VENV)/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
	$(LATEST_VENV)/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'
	$(LATEST_VENV)/bin/python -m pip list --format=freeze > $(LATEST_VENV)/versions.txt
	$(LATEST_VENV)/bin/python -m pytest -p no:randomly $(PYTEST_ARGS)

# The agent as one file that needs only python3 >= 3.11 on the server (no venv, no pip): see docs/agent.md.
ZIPAPP ?= build/sotp-agent.pyz
agent-zipapp:
	$(PY) deploy/zipapp/build_agent.py $(ZIPAPP)

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) $(LATEST_VENV) data build *.egg-info
