# Tingjian (听见). Run as root on Debian with Python 3.11; see README.md.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SHARED ?= ../shared

.PHONY: run test test-fast train bench system-deps clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (Python 3.11) on PATH"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,train]'
	touch $(STAMP)

## run: install and start the whole pipeline on the embedded default with the demo feed
run: $(STAMP)
	$(BIN)/voc up --demo

## system-deps: Debian packages the tests need (clickhouse-server), installed when missing
system-deps:
	@if ! command -v clickhouse-server >/dev/null; then \
	  echo "installing clickhouse-server (Debian)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clickhouse-server >/dev/null; \
	fi

## test: everything the tests need, then the whole suite (slow end-to-end tests included)
test: $(STAMP) system-deps
	$(BIN)/python -m pytest -p no:cacheprovider -ra --durations=15

## test-fast: the suite without the slow end-to-end tests
test-fast: $(STAMP) system-deps
	$(BIN)/python -m pytest -p no:cacheprovider -m "not slow"

## train: retrain the shipped sentiment model from the shared dev data
train: $(STAMP)
	$(BIN)/voc nlp train --data $(SHARED)/data/nlp/sentiment_dev.csv

## bench: the benchmarks (figures printed and written to build/bench/)
bench: $(STAMP)
	mkdir -p build/bench
	$(BIN)/python bench/nlp_bench.py --data $(SHARED)/data/nlp/sentiment_dev.csv --json build/bench/nlp.json
	$(BIN)/python bench/alert_latency.py --rate 1000 --seconds 60 --json build/bench/alert_latency.json

clean:
	rm -rf $(VENV) build .voc
