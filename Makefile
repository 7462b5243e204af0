# Tingjian (听见). Run as root on Debian with Python 3.11; see README.md.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SHARED ?= ../shared

.PHONY: run lint test test-unit test-fast train bench assets schemas docs screenshots system-deps test-deps clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (Python 3.11) on PATH"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,train]'
	touch $(STAMP)

## run: install and start the whole pipeline on the embedded default with the demo feed
run: $(STAMP)
	$(BIN)/voc up --demo

## test-deps: the Debian packages the unit and integration tiers need, installed when missing:
## clickhouse-server, and kcat (the librdkafka client whose use of the local broker
## tests/integration/test_broker_clients.py measures)
test-deps:
	@missing=""; \
	command -v clickhouse-server >/dev/null || missing="$$missing clickhouse-server"; \
	command -v kcat >/dev/null || missing="$$missing kcat"; \
	if [ -n "$$missing" ]; then \
	  echo "installing (Debian):$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

## system-deps: everything the whole suite needs, installed when missing: test-deps, plus
## zookeeper (the cluster tests' coordinator; pulls in Java) and chromium with a CJK font for
## the dashboard's browser tests
system-deps: test-deps
	@missing=""; \
	{ command -v java >/dev/null && [ -f /usr/share/java/zookeeper.jar ]; } || missing="$$missing zookeeper"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	fc-list 2>/dev/null | grep -qi "wenquanyi\|noto sans cjk" || missing="$$missing fonts-wqy-microhei"; \
	if [ -n "$$missing" ]; then \
	  echo "installing (Debian):$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

## assets: rebuild the dashboard (web/ -> services/web/static/, committed); needs Node and npm
assets:
	cd web && npm ci --no-audit --no-fund && node build.mjs

## schemas: write schemas/topics/score.v2.json's metric fields from the metric catalogue
## (services/core/cem_metrics.py); a test fails when the committed file differs
schemas: $(STAMP)
	$(BIN)/python -m services.core.cem_metrics

## docs: write docs/configuration.md from the settings' descriptions (services/core/settings.py);
## a test fails when the committed file differs
docs: $(STAMP)
	$(BIN)/python -m services.core.settings_docs > docs/configuration.md.tmp
	mv docs/configuration.md.tmp docs/configuration.md

## screenshots: retake docs/screenshots/*.png (the pictures README.md and docs/ show) from a fresh
## `voc up --demo` on free ports in a temporary directory, in Chromium at 1280x800 (about five
## minutes; needs chromium: make system-deps); see tests/e2e/screenshots.py
screenshots: $(STAMP)
	$(BIN)/python -m tests.e2e.screenshots

## lint: ruff (pyflakes, pycodestyle, isort, bugbear, pyupgrade and a few more) over the
## repository and mypy over services/ and schemas/, both configured in pyproject.toml; any
## finding fails it
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

TIERS := tests/unit tests/integration tests/e2e
## TEST_WORKERS: pytest-xdist workers of make test and make test-fast (0: one process, in order)
TEST_WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest -p no:cacheprovider -ra --durations=15
# $(call tiers,MARK): the tiers without the `serial` tests on TEST_WORKERS workers (a module's
# tests, and the modules of one SAME_WORKER group in tests/conftest.py, on one worker), then the `serial` ones in one process, as
# they bound wall-clock time; both phases run, and either failing fails the target. MARK is
# appended to both -m expressions (" and not slow"); a phase that selects nothing passes.
define tiers
	rc=0; \
	$(PYTEST) -n $(TEST_WORKERS) --dist loadfile -m "not serial$(1)" $(TIERS) || rc=$$?; \
	$(PYTEST) -n 0 -m "serial$(1)" $(TIERS) || { s=$$?; [ $$s -eq 5 ] || rc=$$s; }; \
	exit $$rc
endef

## test: lint and types, then the three test tiers (slow end-to-end tests included) on
## TEST_WORKERS workers and the `serial` tests after them; what CI runs
test: $(STAMP) system-deps lint
	$(call tiers,)

## test-unit: the unit tier alone; needs nothing but pip (no apt, no servers), about a minute
test-unit: $(STAMP)
	$(BIN)/python -m pytest -p no:cacheprovider tests/unit

## test-fast: lint, then every tier without the slow end-to-end tests, as make test runs them;
## installs only what those need (test-deps)
test-fast: $(STAMP) test-deps lint
	$(call tiers, and not slow)

## train: retrain every shipped NLP artifact with the settings docs/model-card.md names, in the
## order they read each other: the sentiment model (shared dev data), then from every author's
## labelled items in bench/data the CEM topic tagger with its evidence settings, the urgency
## scorer and the stance model (which reads the sentiment model's scores). Fixed seeds: a
## second run writes the same files (8 minutes on 2 idle cores on twenty-seven authors; 17 on
## twenty-eight authors with the cluster tests running, 2026-12-04)
train: $(STAMP)
	OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/voc nlp train --data $(SHARED)/data/nlp/sentiment_dev.csv
	$(BIN)/python bench/train_topics.py topics --data-dir $(SHARED)/data/nlp
	$(BIN)/python bench/train_topics.py urgency
	$(BIN)/python bench/train_nlp.py stance

## bench: every benchmark, then docs/benchmarks.md and docs/benchmarks.json. The two longest on
## 2 shared cores: the emerging-topic week (bench/emerging_bench.py, 12 minutes: every minute of
## the week in process, then real-SQL windows sampled every 12 hours) and voc_eval --loao (every
## NLP artifact refitted without each author in turn, so it grows with the authors: 55 minutes of
## CPU and 62 wall on seventeen authors, 2026-12-02; there are forty-eight now, so several hours)
## (BENCH_E2E_ARGS picks rates and durations; see python bench/e2e_bench.py --help;
## BENCH_EVAL_ARGS= without --loao scores every split with the shipped models only, minutes
## instead of hours; docs/benchmarks.md then cites the command as given)
BENCH_E2E_ARGS ?= --rates 500,1000,2000 --duration 10 --allout-events 15000
BENCH_EVAL_ARGS ?= --loao
BENCH_COMMAND := make bench$(if $(filter command line,$(origin BENCH_EVAL_ARGS)), BENCH_EVAL_ARGS='$(BENCH_EVAL_ARGS)')$(if $(filter command line,$(origin BENCH_E2E_ARGS)), BENCH_E2E_ARGS='$(BENCH_E2E_ARGS)')
bench: $(STAMP) system-deps
	mkdir -p build/bench
	rm -f build/bench/*.json
	$(BIN)/python bench/nlp_bench.py --data $(SHARED)/data/nlp/sentiment_dev.csv --limit-snownlp 2000 --json build/bench/nlp.json
	$(BIN)/python bench/topics_eval.py --data-dir $(SHARED)/data/nlp --json build/bench/topics.json
	$(BIN)/python bench/voc_eval.py $(BENCH_EVAL_ARGS) --data-dir $(SHARED)/data/nlp --json build/bench/voc_eval.json
	$(BIN)/python bench/scoring_bench.py --batches 10 --batch-size 1000
	$(BIN)/python bench/channels_bench.py
	$(BIN)/python bench/dashboard_push.py --rounds 20
	$(BIN)/python bench/sink_bench.py --data $(SHARED)/data/nlp/sentiment_dev.csv --json build/bench/sink.json
	$(BIN)/python bench/stage_profile.py --data $(SHARED)/data/nlp/sentiment_dev.csv --json build/bench/profile.json
	$(BIN)/python bench/cue_sets.py --data $(SHARED)/data/nlp/sentiment_dev.csv --json build/bench/cue_sets.json
	$(BIN)/python bench/nlp_stage_bench.py --data $(SHARED)/data/nlp/sentiment_dev.csv --events 4000 --repeat 5 --json build/bench/nlp_stage.json
	$(BIN)/python bench/producer_bench.py --json build/bench/producer.json
	$(BIN)/python bench/alert_latency.py --rate 1000 --seconds 60 --json build/bench/alert_latency.json
	$(BIN)/python bench/explain_bench.py --trials 20 --json build/bench/explain.json
	$(BIN)/python bench/emerging_bench.py --data-dir $(SHARED)/data/nlp --rate 1000 --days 7 --tick-s 43200 --seed 18 --json build/bench/emerging.json
	$(BIN)/python bench/e2e_bench.py --data $(SHARED)/data/nlp/sentiment_dev.csv $(BENCH_E2E_ARGS) --json build/bench/e2e.json
	$(BIN)/python bench/cluster_bench.py --data $(SHARED)/data/nlp/sentiment_dev.csv --rate 500 --duration 10 --allout-events 10000 --json build/bench/cluster.json
	$(BIN)/python bench/broker_loss.py --rates 200,1000 --seconds 20 --json build/bench/broker_loss.json
	$(BIN)/python bench/report.py --dir build/bench --out docs/benchmarks.md --command "$(BENCH_COMMAND)"

clean:
	rm -rf $(VENV) build .voc
