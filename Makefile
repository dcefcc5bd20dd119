# fraud-detection-mlops: every set-up step lives here. `make demo` and `make test` do all of it.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_BASE ?= python3
VENV        := .venv
PY          := $(CURDIR)/$(VENV)/bin/python
PIP         := $(VENV)/bin/pip
JARS        := .cache/jars
REQ_HASH    := $(shell sha1sum requirements.txt pyproject.toml | sha1sum | cut -c1-12)
VENV_STAMP  := $(VENV)/.installed-$(REQ_HASH)
# the venv first on PATH: `mlflow run --env-manager local` runs `python`, which must be the venv's
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export PYSPARK_PYTHON := $(PY)
export PYSPARK_DRIVER_PYTHON := $(PY)
# local Spark listens on loopback only (driver RPC, block manager, UI); a cluster sets its own
export SPARK_LOCAL_IP ?= 127.0.0.1
# jars already shipped inside pyspark; the connector must not bring a second copy
SPARK_PROVIDED := hadoop-client-api,hadoop-client-runtime,scala-library,slf4j-api,lz4-java,snappy-java,jsr305,spark-tags_2.13,scala-parallel-collections_2.13
SUDO        := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTEST_ARGS ?=

.PHONY: help setup system-packages venv jars stack-up stack-down stack-clean health test \
        test-fast test-unit demo demo-stop lint

# `make help` lists every target from its `## ` comment on the target's line (a target without
# one is listed too, as "(no description)": tests/unit/test_makefile_help.py checks both).
help:   ## this list: every target, one line each
	@awk '/^[a-zA-Z][a-zA-Z0-9_-]*:([^=]|$$)/ { \
	        name = $$1; sub(/:.*/, "", name); text = "(no description)"; \
	        if (index($$0, "## ")) { text = substr($$0, index($$0, "## ") + 3) } \
	        printf "make %-18s %s\n", name, text }' $(firstword $(MAKEFILE_LIST))

setup: system-packages venv jars   ## venv + pinned packages, JVM jars (Maven), PostgreSQL, Redis, promtool, amtool ... (Debian)

# Debian packages: PostgreSQL, Redis, Java 17, Maven, Chromium (browser tests), Prometheus and its
# Alertmanager (promtool and amtool check their configuration in tests), installed only when missing.
system-packages:   ## the Debian packages the stack needs, installed only when missing (apt-get)
	@missing=""; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v java >/dev/null || missing="$$missing openjdk-17-jre-headless"; \
	command -v mvn >/dev/null || missing="$$missing maven"; \
	command -v runuser >/dev/null || missing="$$missing util-linux"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v chromedriver >/dev/null || missing="$$missing chromium-driver"; \
	command -v promtool >/dev/null || missing="$$missing prometheus"; \
	command -v amtool >/dev/null || missing="$$missing prometheus-alertmanager"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q $$missing; \
	  $(SUDO) service postgresql stop >/dev/null 2>&1 || true; \
	  $(SUDO) service redis-server stop >/dev/null 2>&1 || true; \
	  $(SUDO) service prometheus stop >/dev/null 2>&1 || true; \
	  $(SUDO) service prometheus-alertmanager stop >/dev/null 2>&1 || true; \
	fi

venv: $(VENV_STAMP)   ## .venv with the exact pins of requirements.txt (rebuilt when they change)
$(VENV_STAMP): requirements.txt pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON_BASE) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -r requirements.txt
	$(PIP) install -q --no-deps -e .
	@# Spark puts pyspark.zip first on every Python worker's path; zipimport keeps no bytecode, so
	@# each new worker compiles pyspark again (~1 s of CPU). The streaming state runner must connect
	@# back within a fixed 10 s, which a loaded machine misses. The same pyspark is installed in the
	@# venv with its bytecode: without the zip, workers import that one.
	rm -f $(VENV)/lib/python*/site-packages/pyspark/python/lib/pyspark.zip
	@rm -f $(VENV)/.installed-*; touch $@

jars: $(JARS)/kafka-broker/.fetched $(JARS)/spark-kafka/.fetched   ## the Kafka broker and Spark's Kafka connector from Maven Central into .cache/jars
$(JARS)/%/.fetched: jvm/%/pom.xml
	@rm -rf $(JARS)/$*; mkdir -p $(JARS)/$*
	mvn -q -B -f jvm/$*/pom.xml dependency:copy-dependencies -DincludeScope=runtime \
	    -DexcludeArtifactIds=$(if $(filter spark-kafka,$*),$(SPARK_PROVIDED),none) \
	    -DoutputDirectory=$(CURDIR)/$(JARS)/$*
	@touch $@

stack-up: setup   ## start PostgreSQL, Redis, Kafka, MLflow on 127.0.0.1 (what is not running); harmless twice
	$(PY) -m devstack.stack up

stack-down:   ## stop the processes the stack started (by PID), keep the data
	@if [ -x $(PY) ]; then $(PY) -m devstack.stack down; fi

stack-clean:   ## stop and delete .stack/ (data, logs, generated passwords)
	@if [ -x $(PY) ]; then $(PY) -m devstack.stack clean; else rm -rf .stack; fi

health:   ## one line per service; non-zero exit naming what is down
	@$(PY) -m devstack.health

# Lint, then all tests (unit, model, integration, e2e, reliability) against the real stack; the
# stack is always stopped after, and the run fails if any process of ours is left behind.
test: setup lint   ## set up, lint, start the stack, run every test, stop the stack
	@status=0; \
	trap '$(PY) -m devstack.stack down' EXIT; \
	$(PY) -m devstack.stack up || exit 1; \
	$(PY) -m pytest --durations=30 $(PYTEST_ARGS) tests || status=$$?; \
	$(PY) -m devstack.stack down; trap - EXIT; \
	$(PY) -m devstack.stack verify-stopped || { echo "processes left running after stack-down"; status=1; }; \
	exit $$status

# The fast tier: unit tests of pure code and of the contracts (messages, tables, settings, compose,
# MLproject), no services; the slow unit tests (marked slow) run in `make test` only.
test-fast: venv   ## unit tests only, not the slow ones (no services, a few minutes at most)
	$(PY) -m pytest -m "unit and not slow" tests/unit $(PYTEST_ARGS)

test-unit: venv   ## every unit test, the slow ones too (no services)
	$(PY) -m pytest -m unit tests/unit $(PYTEST_ARGS)

lint: venv   ## ruff check .
	$(VENV)/bin/ruff check .

# ---------------------------------------------------------------- batch pipelines (pipelines/)
# Rebuild the online feature store from the history: make materialize SINCE=91d [SOURCE=parquet HISTORY=data/history.parquet]
SINCE             ?= 91d
SOURCE            ?= postgres
MATERIALIZE_ARGS  ?=
.PHONY: materialize
materialize: stack-up   ## the feature store from PostgreSQL transactions (or SOURCE=parquet HISTORY=...); resumable
	@$(WITH_ENV) $(PY) -m pipelines.materialize --since $(SINCE) --source $(SOURCE) $(if $(HISTORY),--path $(HISTORY)) $(MATERIALIZE_ARGS)

# ---------------------------------------------------------------- the whole loop, locally
DEMO_DAYS      ?= 30
DEMO_CUSTOMERS ?= 2000
DEMO_MODEL     ?= hist_gradient_boosting
DEMO_LIVE      ?= 3000
DEMO_RATE      ?= 300
DEMO_FRAUD    ?= 0.01
DEMO_DECISIONS ?= 500
WITH_ENV        = set -a; . $(CURDIR)/.stack/stack.env; set +a;

demo: stack-up   ## setup, stack, history, validate, train, evaluate, promote, stream, summary
	@echo "== 1/4 batch loop: generate -> validate -> train -> evaluate -> promote (mlflow run . -e main) -> materialize"
	@$(WITH_ENV) $(VENV)/bin/mlflow run . -e main --env-manager local --experiment-name fraud-detection \
	    -P days=$(DEMO_DAYS) -P customers=$(DEMO_CUSTOMERS) -P model_type=$(DEMO_MODEL)
	@$(PY) -m pipelines.materialize --source parquet --path data/history.parquet --since 91d --no-progress
	@echo "== 2/4 streaming job (spark-submit, background; log .stack/logs/streaming.log)"
	@$(MAKE) --no-print-directory stream-bg
	@echo "== analyst portal (background; log .stack/logs/portal.log)"
	@$(MAKE) --no-print-directory portal-bg && $(PY) -m devstack.portal_demo
	@echo "== decision service (background; log .stack/logs/decisions.log)"
	@$(MAKE) --no-print-directory decisions-bg
	@echo "== 3/4 the seed's two scenarios (the job's first batch), then $(DEMO_LIVE) live transactions of the history's customers at $(DEMO_RATE)/s"
	@since=$$(date -u +%Y-%m-%dT%H:%M:%SZ); tag=$$(date +%s); truth=.stack/demo/truth-$$tag.csv; \
	$(PY) -m devstack.demo send-seed-scenarios --run-tag $$tag && \
	$(PY) -m devstack.demo wait-scored --run-tag $$tag && \
	live=$$($(PY) -m devstack.demo live-plan --customers $(DEMO_CUSTOMERS) --fraud-rate $(DEMO_FRAUD) --num $(DEMO_LIVE) --truth $$truth) && \
	$(PY) -m streaming.producer --num $(DEMO_LIVE) --rate $(DEMO_RATE) --fraud-rate $(DEMO_FRAUD) $$live --no-progress && \
	echo "== 4/4 waiting until every message is scored" && \
	$(PY) -m devstack.demo summary --run-tag $$tag --since $$since --expect $$(( $(DEMO_LIVE) + 2 )) --truth $$truth
	@echo "== decisions before authorization: $(DEMO_DECISIONS) live transactions through POST /v1/decisions"
	@plan=$$($(PY) -m devstack.demo live-plan --customers $(DEMO_CUSTOMERS) --fraud-rate $(DEMO_FRAUD) --num $(DEMO_DECISIONS) --truth .stack/demo/decisions-truth.csv) && \
	$(PY) -m devstack.decisions_demo live --num $(DEMO_DECISIONS) --fraud-rate $(DEMO_FRAUD) $$plan
	@echo "(the job, the portal and the decision service keep running: make demo-stop stops them and the stack)"

demo-stop: decisions-stop portal-stop stream-stop stack-down   ## stop the decision service, the portal, the streaming job and the stack

# ---------------------------------------------------------------- streaming job
SPARK_SUBMIT = $(VENV)/bin/spark-submit --master 'local[2]' --driver-memory 3g \
    --conf spark.sql.shuffle.partitions=4 \
    --jars $(shell ls $(CURDIR)/$(JARS)/spark-kafka/*.jar 2>/dev/null | paste -sd, -)
STREAM_ARGS ?=

.PHONY: stream stream-bg stream-stop
stream: stack-up   ## run the scoring job in the foreground (Ctrl-C stops it)
	$(SPARK_SUBMIT) streaming/scoring_job.py $(STREAM_ARGS)

stream-bg: stack-up   ## run the scoring job in the background (log: .stack/logs/streaming.log)
	@$(PY) -m devstack.jobs start streaming -- $(SPARK_SUBMIT) streaming/scoring_job.py $(STREAM_ARGS)

stream-stop:   ## stop the background scoring job
	@$(PY) -m devstack.jobs stop streaming

# ---------------------------------------------------------------- a real cluster on 127.0.0.1 (devstack/cluster.py)
# Spark standalone (master + 2 workers) and a 3-node Kafka KRaft cluster, state in .stack/cluster;
# the job keeps the local stack's PostgreSQL, Redis and MLflow and reads the cluster's topics.
CLUSTER_ENV = set -a; . $(CURDIR)/.stack/stack.env; . $(CURDIR)/.stack/cluster/cluster.env; set +a;
SPARK_SUBMIT_CLUSTER = $(VENV)/bin/spark-submit $$($(PY) -m devstack.cluster submit-args) --driver-memory 1g \
    --conf spark.sql.shuffle.partitions=4 \
    --jars $(shell ls $(CURDIR)/$(JARS)/spark-kafka/*.jar 2>/dev/null | paste -sd, -)
CLUSTER_JOB = streaming/scoring_job.py --checkpoint-dir $(CURDIR)/.stack/cluster/checkpoints/scoring-job

.PHONY: cluster-up cluster-down stream-cluster stream-cluster-bg
cluster-up: setup   ## Spark master + 2 workers and 3 Kafka brokers on 127.0.0.1; harmless twice
	$(PY) -m devstack.cluster up

cluster-down:   ## stop the cluster's job, workers, master and brokers (by PID); keeps .stack/cluster
	@if [ -x $(PY) ]; then $(PY) -m devstack.cluster down; fi

stream-cluster: stack-up cluster-up   ## the scoring job on the cluster, foreground
	$(CLUSTER_ENV) $(SPARK_SUBMIT_CLUSTER) $(CLUSTER_JOB) $(STREAM_ARGS)

stream-cluster-bg: stack-up cluster-up   ## the same in the background (log .stack/cluster/logs/streaming.log)
	@$(CLUSTER_ENV) $(PY) -m devstack.cluster start-job -- $(SPARK_SUBMIT_CLUSTER) $(CLUSTER_JOB) $(STREAM_ARGS)

# ---------------------------------------------------------------- analyst portal (portal/)
.PHONY: portal portal-bg portal-stop
portal: stack-up   ## the analyst portal in the foreground on 127.0.0.1:$PORTAL_PORT (8050)
	$(PY) -m portal serve

portal-bg: stack-up   ## the same in the background (log: .stack/logs/portal.log)
	@$(PY) -m devstack.jobs start portal -- $(PY) -m portal serve

portal-stop:   ## stop the background portal
	@$(PY) -m devstack.jobs stop portal

# ---------------------------------------------------------------- decision service (decisions/)
DECISIONS_ARGS ?=
.PHONY: decisions decisions-bg decisions-stop decisions-key
decisions: stack-up   ## the decision API in the foreground on 127.0.0.1:$DECISIONS_PORT (8060)
	$(PY) -m decisions serve $(DECISIONS_ARGS)

decisions-bg: stack-up   ## the same in the background (log: .stack/logs/decisions.log); waits until it answers
	@$(PY) -m devstack.jobs start decisions -- $(PY) -m decisions serve $(DECISIONS_ARGS)
	@$(PY) -m devstack.decisions_demo wait

decisions-stop:   ## stop the background decision service
	@$(PY) -m devstack.jobs stop decisions

decisions-key: stack-up   ## a new API key: make decisions-key CLIENT=name
	@$(PY) -m decisions keys create --client $(or $(CLIENT),$(USER),local)

# ---------------------------------------------------------------- rules and lists (rules/)
.PHONY: rules rules-backtest rules-bench
rules: stack-up   ## the rules (live and newest versions), the lists and the changes waiting for approval
	@$(PY) -m rules list && $(PY) -m rules lists show && $(PY) -m rules pending

rules-backtest: stack-up   ## make rules-backtest EXPR='amount > 2000.0' [DAYS=30]
	@$(PY) -m rules backtest --expression "$(EXPR)" --days $(or $(DAYS),30)

rules-bench: stack-up   ## the backtest benchmark: 30 days of a 1M-transaction table
	@$(PY) -m bench.rules_bench

# ---------------------------------------------------------------- benchmarks (no timed asserts in tests)
BENCH_ARGS ?=
.PHONY: bench
bench: stack-up   ## throughput, latency, scoring cost, seed path: bench/results/<timestamp>.{json,md}
	$(PY) -m bench.run $(BENCH_ARGS)
