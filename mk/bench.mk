# Benchmarks (issue 5), included by the top-level Makefile.
#
#   make bench          full run (< 10 min): burrow reliable and direct vs the seed-style baseline and
#                       the broker's ceiling; JSON, markdown table and PNG in benchmarks/results/<time>/
#   make bench-quick    the same, smaller and one round (< 2 min)
#   make bench-peers    make bench plus Celery (rpc://), nameko and aio-pika's RPC, each in its own venv
#                       built from PyPI on first use and cached (benchmarks/peers/); not part of CI
#   make bench-cluster  burrow on a throwaway 3-node cluster vs one node, quorum/classic/direct replies
#                       (benchmarks/cluster.py, about 5 min); `make bench` runs it after the main benchmark
#   make bench-profile  a quick run with py-spy attached to burrow's producer and consumer at the
#                       highest concurrency (collapsed stacks + a summary in results.json)
#   make bench-http-stacks  the two HTTP stacks considered for the producer daemon's API (aiohttp,
#                       uvicorn) and the finished API, without a broker (benchmarks/http_candidates.py)
#
# Every raw.json they write starts with a provenance block (benchmarks/rawfile.py): the command,
# the git revision (tests/support/provenance.py, hence PYTHONPATH=tests/support), the UTC start and
# end, and the load averages before and after the run.
#
# All of them install what they need first: the venv of scripts/bootstrap-dev.sh (with the bench
# extra, matplotlib) and, for bench-profile only, py-spy in its own cached venv.

BENCH_ARGS ?=
BENCH_CLUSTER_ARGS ?=
PY_SPY_VERSION ?= 0.4.3
PY_SPY_VENV = $${BURROW_CACHE:-/var/cache/burrow-ci}/py-spy-$(PY_SPY_VERSION)

.PHONY: bench bench-quick bench-peers bench-profile bench-cluster bench-http-stacks

bench:
	@venv=$$(scripts/bootstrap-dev.sh) && PATH="$$venv/bin:$$PATH" PYTHONPATH=tests/support "$$venv/bin/python" -m benchmarks $(BENCH_ARGS)
	@$(MAKE) --no-print-directory bench-cluster

bench-cluster:
	@venv=$$(scripts/bootstrap-dev.sh) && PATH="$$venv/bin:$$PATH" PYTHONPATH=tests/support "$$venv/bin/python" -m benchmarks.cluster $(BENCH_CLUSTER_ARGS)

bench-http-stacks:
	@venv=$$(scripts/bootstrap-dev.sh) && PYTHONPATH=tests/support "$$venv/bin/python" -m benchmarks.http_candidates $(BENCH_ARGS)

bench-quick:
	@venv=$$(scripts/bootstrap-dev.sh) && PATH="$$venv/bin:$$PATH" PYTHONPATH=tests/support "$$venv/bin/python" -m benchmarks --quick $(BENCH_ARGS)

bench-peers:
	@venv=$$(scripts/bootstrap-dev.sh) && PATH="$$venv/bin:$$PATH" PYTHONPATH=tests/support "$$venv/bin/python" -m benchmarks --peers $(BENCH_ARGS)

bench-profile:
	@venv=$$(scripts/bootstrap-dev.sh) && \
	if [ ! -x "$(PY_SPY_VENV)/bin/py-spy" ]; then \
		/usr/bin/python3 -m venv "$(PY_SPY_VENV)" && "$(PY_SPY_VENV)/bin/pip" install -q "py-spy==$(PY_SPY_VERSION)"; \
	fi && \
	PATH="$$venv/bin:$$PATH" PYTHONPATH=tests/support "$$venv/bin/python" -m benchmarks --quick --profile --py-spy "$(PY_SPY_VENV)/bin/py-spy" $(BENCH_ARGS)
