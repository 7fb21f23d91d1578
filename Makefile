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

# Two pytest-xdist workers: a test spends about a third of its time waiting (on Ray's and MLflow's
# processes starting, on its trials), which the other worker fills. Each worker's tests start their
# own Ray, so more workers than cores only overload the machine. TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2
PYTEST := $(VENV)/bin/pytest -n $(TEST_WORKERS) --dist loadgroup

# The files with a serial test: pytest collects only those for them (collecting every file takes ~11 s).
SERIAL_FILES := $(shell grep -l 'mark.serial' tests/test_*.py)

test: $(INSTALLED) browser
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(PYTEST) -m "not serial" --durations=20
	$(VENV)/bin/pytest -m serial --durations=5 $(SERIAL_FILES)

test-fast: $(INSTALLED)
	$(PYTEST) -m "not slow"

lint: $(INSTALLED)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(VENV)/bin/lint-imports
