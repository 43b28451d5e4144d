# iotmon — developer entry points. `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
KAFKA_PORT ?= 9092
STAMP := $(VENV)/.installed

.PHONY: install test lint typecheck pytest demo bench bench-full kafka-up kafka-down kafka-jars clean docs email-preview

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check iotmon tests bench examples dev
	$(BIN)/ruff format --check iotmon tests bench examples dev

typecheck: $(STAMP)
	$(BIN)/mypy

# Tests start their own broker on KAFKA_TEST_PORT (39092), apart from a dev broker on 9092;
# IOTMON_TEST_BOOTSTRAP=host:port uses an existing broker instead.
pytest: $(STAMP)
	KAFKA_PORT=$(or $(KAFKA_TEST_PORT),39092) $(BIN)/pytest -q $(PYTEST_ARGS)

test: lint typecheck pytest

demo: $(STAMP)
	$(BIN)/iotmon demo $(DEMO_ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

bench-full: $(STAMP)
	$(BIN)/python -m bench --full --results-dir bench/results/full $(BENCH_ARGS)

kafka-jars:
	dev/kafka/kafka.sh jars

kafka-up:
	KAFKA_PORT=$(KAFKA_PORT) dev/kafka/kafka.sh up

kafka-down:
	KAFKA_PORT=$(KAFKA_PORT) dev/kafka/kafka.sh down

clean:
	rm -rf .mypy_cache .ruff_cache .pytest_cache .hypothesis build dist *.egg-info

# docs/reference.md from the CLI; docs/email.png too where Chromium is installed.
docs: $(STAMP)
	$(BIN)/python -m iotmon.cli.reference
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then \
		$(MAKE) --no-print-directory email-preview; \
	else \
		echo "docs/email.png not updated: no Chromium (Debian: apt-get update && apt-get install -y chromium; then make email-preview)"; \
	fi

# The HTML part of a sample alert email, as a browser shows it (needs Chromium).
email-preview: $(STAMP)
	$(BIN)/python -m iotmon.notify.preview docs/email.png --width 900 --height 720
