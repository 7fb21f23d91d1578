# Two entry points (see README): `make demo` runs the service on the embedded digits, `make test` the tests.
# Both create .venv and install the project into it first (once; again when pyproject.toml changes).

PYTHON ?= python3
VENV := .venv
INSTALLED := $(VENV)/.installed

.PHONY: demo test test-fast lint install

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $(INSTALLED)

install: $(INSTALLED)

demo: $(INSTALLED)
	$(VENV)/bin/ovatune run digits

test: $(INSTALLED)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest

test-fast: $(INSTALLED)
	$(VENV)/bin/pytest -m "not slow"

lint: $(INSTALLED)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .
