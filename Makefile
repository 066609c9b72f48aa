# burrow: the two commands of the README, and the rest (`make help` lists every target).
#
#   make demo    start a throwaway broker and a consumer, send a burst, show replies and a summary
#   make test    run the whole test suite (unit, integration on a real broker, system on nspawn hosts)
#
# Both install what they need first (apt-get packages, a cached virtualenv): scripts/bootstrap-dev.sh,
# and for the system tests scripts/install-system-test-deps.sh (nspawn, debootstrap, ansible, dh-virtualenv).
#
# Each target says what it does in a `## ` comment on its own line of rules: that comment is its line
# in `make help`, and the README's command list is `make help`'s output (tests/unit/test_make_help.py
# fails when a target has no line or the README differs). Test targets are named test-*.

SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTEST_ARGS ?=

# The start of every recipe that runs the project's Python: the cached virtualenv of
# scripts/bootstrap-dev.sh (built first when its inputs changed), its commands first on PATH, so
# `python` and the daemons' console scripts are the checkout's.
VENV = venv=$$(scripts/bootstrap-dev.sh) || exit 1; export PATH="$$venv/bin:$$PATH";
# pytest from that virtualenv; a test target adds its marks and files, then $(PYTEST_ARGS).
PYTEST = $(VENV) python -m pytest -ra

.PHONY: help venv demo test test-fast test-prometheus

help: ## list every target with one line (the README's command list is this output)
	@awk -F ':.*## ' '/^[a-z][a-z0-9-]*:.*## / { printf "make %-18s # %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

venv: ## build (or reuse) the cached virtualenv the other targets run in
	@scripts/bootstrap-dev.sh >/dev/null

demo: ## a throwaway broker and consumer, a burst of requests and its summary
	@$(VENV) burrow demo

# The nspawn cluster scenarios (tests/system/test_cluster.py, alone `make test-cluster`) run in a
# second pytest session beside the rest (scripts/test-all.sh): one after the other they would take
# CI's whole 40 minutes. PYTEST_ARGS go to the session of the rest.
test: system-test-deps ## the whole suite: unit, integration, faults, system (about 30 min, root)
	@scripts/test-all.sh $(PYTEST_ARGS)

test-fast: ## the unit and integration tests only: no nspawn hosts, no faults (minutes)
	@$(PYTEST) -m "not system and not faults" $(PYTEST_ARGS)

test-prometheus: system-test-deps ## a real Prometheus server scraping both daemons and their alert rules
	@$(PYTEST) tests/system/test_prometheus_server.py $(PYTEST_ARGS)

-include mk/*.mk
