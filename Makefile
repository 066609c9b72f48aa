# burrow: the two commands of the README, and the rest.
#
#   make demo    start a throwaway broker and a consumer, send a burst, show replies and a summary
#   make test    run the whole test suite (unit, integration on a real broker, system on nspawn hosts)
#
# Both install what they need first (apt-get packages, a cached virtualenv): scripts/bootstrap-dev.sh,
# and for the system tests scripts/install-system-test-deps.sh (nspawn, debootstrap, ansible, dh-virtualenv).

SHELL := /bin/bash
PYTEST_ARGS ?=

.PHONY: demo test test-fast test-prometheus venv

venv:
	@scripts/bootstrap-dev.sh >/dev/null

demo:
	@venv=$$(scripts/bootstrap-dev.sh) && "$$venv/bin/burrow" demo

# The nspawn cluster scenarios (tests/system/test_cluster.py, alone `make test-cluster`) run in a
# second pytest session beside the rest (scripts/test-all.sh): one after the other they would take
# CI's whole 40 minutes. PYTEST_ARGS go to the session of the rest. `make test-prometheus` runs the
# real-Prometheus test alone.
test:
	@scripts/install-system-test-deps.sh
	@scripts/test-all.sh $(PYTEST_ARGS)

test-prometheus:
	@scripts/install-system-test-deps.sh
	@venv=$$(scripts/bootstrap-dev.sh) && PATH="$$venv/bin:$$PATH" "$$venv/bin/python" -m pytest -ra \
		tests/system/test_prometheus_server.py $(PYTEST_ARGS)

test-fast:
	@venv=$$(scripts/bootstrap-dev.sh) && PATH="$$venv/bin:$$PATH" "$$venv/bin/python" -m pytest -ra -m "not system and not faults" $(PYTEST_ARGS)

-include mk/*.mk
