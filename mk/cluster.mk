# The RabbitMQ cluster on nspawn hosts (issue 14), included by the top-level Makefile.
#
# site.yml deploys 3 brokers, a producer and 2 consumer hosts, each in its own network namespace; then
# five faults under load (tests/system/test_cluster.py), each writing its tally to
# $(CLUSTER_RELIABILITY_DIR)/cluster-<scenario>.json. `make test` runs the same file in a session of
# its own beside the rest (scripts/test-all.sh), its tallies in build/reliability. Needs root. On a
# quiet 2-core machine site.yml takes about 3 min the first time and 1.5 min the second; each fault 1-2 min.
# The same session switches a 2-broker cluster to inter-node TLS on each Debian release
# (tests/system/test_inter_node_tls.py; alone: `make test-cluster PYTEST_ARGS="-k test_inter_node_tls"`).

CLUSTER_RELIABILITY_DIR ?= build/reliability

.PHONY: test-cluster

test-cluster: export BURROW_RELIABILITY_DIR = $(CLUSTER_RELIABILITY_DIR)
test-cluster: system-test-deps ## a 3-broker cluster deployed on nspawn hosts, five faults under load (root)
	@$(PYTEST) -m system tests/system/test_cluster.py tests/system/test_inter_node_tls.py $(PYTEST_ARGS)
