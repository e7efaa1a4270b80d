# The way in. `make run` and `make test` work on a fresh Debian 12 machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CONFIG ?= etc/airisd.toml
PYTEST_ARGS ?=

.PHONY: help install run test test-fast lint bench bench-logs-traces bench-protocols bench-backends package sample-config clean services

help:
	@echo "make run            install into $(VENV) and run every role with $(CONFIG) (data in ./var)"
	@echo "make test           install, start the test servers, run the whole suite"
	@echo "make test-fast      the suite without end-to-end and server tests"
	@echo "make lint           ruff and mypy"
	@echo "make bench          the benchmarks in bench/ (results in docs/benchmarks.md)"
	@echo "make bench-backends delivery rates to the backends, disk vs memory buffer"
	@echo "make package        dist/airisd_<version>_amd64.deb and dist/airisd-<version>.x86_64.rpm"
	@echo "make sample-config  regenerate etc/airisd.toml from the plugins' samples"

$(BIN)/airisd: pyproject.toml setup.py
	@scripts/bootstrap.sh "$(PYTHON)" "$(VENV)"
	@touch $@

install: $(BIN)/airisd

run: install
	$(BIN)/airisd run --config $(CONFIG)

services: install
	scripts/test-services.sh install

test: install services
	AIRISD_REQUIRE_SERVICES=$${AIRISD_REQUIRE_SERVICES:-1} $(BIN)/pytest $(PYTEST_ARGS)

test-fast: install
	$(BIN)/pytest -m "not e2e and not services and not slow" $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check airisd plugins tests bench
	$(BIN)/mypy airisd plugins

bench: install
	bench/run.sh

# Issues 3 and 4: log and span ingest, search latency over 5M lines and 10M spans. The first run
# builds those stores (about 15 minutes, ~4 GB cached in bench/.cache/); later runs take ~2 minutes.
bench-logs-traces: install
	$(BIN)/python bench/logs_traces.py

# Issue 8: remote_write and line protocol next to VictoriaMetrics.
bench-protocols: install
	bench/protocols/run.sh

# Issue 7: events/s delivered to ClickHouse (chdb), Elasticsearch (noida-db), Phoenix, Redis and
# Kafka (tansu), and the disk buffer's cost next to the memory buffer. About 5 minutes.
bench-backends: install
	bench/backends/run.sh

package: install
	scripts/package.sh

sample-config: install
	$(BIN)/airisd config sample > etc/airisd.toml

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
