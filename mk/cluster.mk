# The RabbitMQ cluster on nspawn hosts (issue 14), included by the top-level Makefile.
#
#   make test-cluster   site.yml deploys 3 brokers, a producer and 2 consumer hosts, each in its own
#                       network namespace; then five faults under load (tests/system/test_cluster.py),
#                       each writing its tally to $(RELIABILITY_DIR)/cluster-<scenario>.json
#
# Not part of `make test` (see the Makefile): unproven within CI's budget. Needs root; the first
# deployment took 27 min on a loaded 2-core machine.

CLUSTER_RELIABILITY_DIR ?= build/reliability

.PHONY: test-cluster

test-cluster: system-test-deps
	@venv=$$(scripts/bootstrap-dev.sh) && PATH="$$venv/bin:$$PATH" BURROW_RELIABILITY_DIR=$(CLUSTER_RELIABILITY_DIR) \
		"$$venv/bin/python" -m pytest -ra -m system tests/system/test_cluster.py $(PYTEST_ARGS)
