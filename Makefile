# Two entry points (see README): `make demo` runs the service on the embedded digits, `make test` the tests.
# Both create .venv and install the project into it first (once; again when pyproject.toml changes).

PYTHON ?= python3
VENV := .venv
INSTALLED := $(VENV)/.installed

CHROMIUM := /usr/bin/chromium

.PHONY: demo test test-fast lint install browser

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $(INSTALLED)

install: $(INSTALLED)

# The UI test drives Debian's Chromium (no browser download): installed here when missing.
$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
		echo "note: the MLflow UI browser test needs Debian's chromium ($(CHROMIUM)): sudo apt-get install chromium"; \
	fi

browser: $(CHROMIUM)

demo: $(INSTALLED)
	$(VENV)/bin/ovatune run digits --replicates 3

test: $(INSTALLED) browser
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/pytest

test-fast: $(INSTALLED)
	$(VENV)/bin/pytest -m "not slow"

lint: $(INSTALLED)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(VENV)/bin/lint-imports
