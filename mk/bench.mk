# Benchmarks (issue 5), included by the top-level Makefile; `make help` has a line for each target.
#
# Each run writes its JSON, markdown table and PNG to benchmarks/results/<time>/. bench-peers builds
# each peer's venv from PyPI on first use and caches it (benchmarks/peers/). bench-profile attaches
# py-spy (its own cached venv) to burrow's producer and consumer at the highest concurrency and keeps
# collapsed stacks and a summary in results.json. All of them run in the venv of
# scripts/bootstrap-dev.sh (with the bench extra, matplotlib).
#
# Every raw.json they write starts with a provenance block (benchmarks/rawfile.py): the command,
# the git revision (tests/support/provenance.py, hence BENCH_PATH), the UTC start and end, and the
# load averages before and after the run.

BENCH_ARGS ?=
BENCH_CLUSTER_ARGS ?=
BENCH_SERVICES_ARGS ?=
BENCH_WINDOWS_ARGS ?=
PY_SPY_VERSION ?= 0.4.3
BENCH_PATH := PYTHONPATH=tests/support
PY_SPY_VENV = $${BURROW_CI_CACHE:-/var/cache/burrow-ci}/py-spy-$(PY_SPY_VERSION)

.PHONY: bench bench-quick bench-peers bench-profile bench-cluster bench-services bench-http-stacks bench-windows bench-targets

bench: ## burrow vs baseline and broker ceiling; then bench-cluster, bench-services
	@$(VENV) $(BENCH_PATH) python -m benchmarks $(BENCH_ARGS)
	@$(MAKE) --no-print-directory bench-cluster
	@$(MAKE) --no-print-directory bench-services

bench-services: ## one broker: 1 service vs 4 services vs 4 partitions (about 1 min)
	@$(VENV) $(BENCH_PATH) python -m benchmarks.services $(BENCH_SERVICES_ARGS)

bench-cluster: ## burrow on a throwaway 3-node cluster vs one node (about 2 min)
	@$(VENV) $(BENCH_PATH) python -m benchmarks.cluster $(BENCH_CLUSTER_ARGS)

bench-windows: ## window 32, 64, 128 or adaptive on 1 and 3 consumers, slow handler mix
	@$(VENV) $(BENCH_PATH) python -m benchmarks.windows $(BENCH_WINDOWS_ARGS)

bench-targets: ## RESULTS.md's target table from the newest benchmarks/results-*.json
	@$(VENV) python -m benchmarks.targets

bench-http-stacks: ## the HTTP stacks considered for the producer's API, without a broker
	@$(VENV) $(BENCH_PATH) python -m benchmarks.http_candidates $(BENCH_ARGS)

bench-quick: ## the benchmark smaller and in one round (< 2 min)
	@$(VENV) $(BENCH_PATH) python -m benchmarks --quick $(BENCH_ARGS)

bench-peers: ## make bench plus Celery, nameko and aio-pika's RPC in cached venvs (not CI)
	@$(VENV) $(BENCH_PATH) python -m benchmarks --peers $(BENCH_ARGS)

bench-profile: ## bench-quick with py-spy on the producer and consumer at top concurrency
	@$(VENV) \
	if [ ! -x "$(PY_SPY_VENV)/bin/py-spy" ]; then \
		/usr/bin/python3 -m venv "$(PY_SPY_VENV)" && "$(PY_SPY_VENV)/bin/pip" install -q "py-spy==$(PY_SPY_VERSION)"; \
	fi && \
	$(BENCH_PATH) python -m benchmarks --quick --profile --py-spy "$(PY_SPY_VENV)/bin/py-spy" $(BENCH_ARGS)
