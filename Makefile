# aibo — the two commands: `make run` (the whole system, embedded default) and `make test`.
# Needs only Python ≥ 3.11 and make: node/npm for the front-end libraries come from PyPI.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test install install-test assets static migrate lint format lock bench clean

run: install assets static
	$(PY) manage.py migrate --noinput
	$(PY) manage.py load_sample_data
	$(PY) manage.py serve --host $(HOST) --port $(PORT)

# DEBUG is off by default, so WhiteNoise serves the collected (hashed, compressed) files only;
# collected again only when a static file, a front-end library or Django's admin changed.
DATA_DIR := $(or $(AIBO_DATA_DIR),var)
STATIC_SOURCES := $(shell find static -type f) node_modules/.installed $(VENV)/.run-installed
$(DATA_DIR)/static/staticfiles.json: $(STATIC_SOURCES) | install assets
	$(PY) manage.py collectstatic --noinput --verbosity 0

static: $(DATA_DIR)/static/staticfiles.json

test: install-test assets
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(PY) -m pytest $(PYTEST_ARGS)

$(PY):
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "aibo needs Python >= 3.11"'
	$(PYTHON) -m venv $(VENV)

# Installs are keyed on the lock files, so a second `make run` starts at once.
$(VENV)/.run-installed: requirements/run.lock | $(PY)
	$(PY) -m pip install --quiet --require-hashes -r requirements/run.lock
	touch $@

$(VENV)/.test-installed: requirements/test.lock | $(PY)
	$(PY) -m pip install --quiet --require-hashes -r requirements/test.lock
	touch $@ $(VENV)/.run-installed

install: $(VENV)/.run-installed
install-test: $(VENV)/.test-installed

node_modules/.installed: package-lock.json | install
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/npm ci --no-audit --no-fund --loglevel=error
	touch $@

assets: node_modules/.installed

migrate: install
	$(PY) manage.py migrate --noinput

lint: install-test
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: install-test
	$(BIN)/ruff check --fix . && $(BIN)/ruff format .

# Re-pin every dependency (needs `pip install uv`); commit the lock files it writes.
lock:
	$(PYTHON) -m uv pip compile pyproject.toml --universal --python-version 3.11 --generate-hashes -q -o requirements/run.lock
	$(PYTHON) -m uv pip compile pyproject.toml --extra test --universal --python-version 3.11 --generate-hashes -q -o requirements/test.lock

bench: install-test assets
	$(PY) bench/bench_backtest.py
	$(PY) bench/bench_import.py

clean:
	rm -rf $(VENV) node_modules var
