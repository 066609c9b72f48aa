# The fault and bad-input campaign (issues 6 and 13), included by the top-level Makefile.
#
# `make faults` runs every fault, bad-input and security test (pytest -m faults); each load scenario
# rewrites its own docs/reliability/<scenario>.json, the full run also docs/reliability/checks.json;
# then docs/reliability.md is rendered from docs/reliability/. The run's DEBUG log (with each
# request's correlation id) stays in build/faults-debug.log. Some scenarios only:
#   make faults FAULTS_ARGS='tests/faults/test_fault_scenarios.py::test_broker_crash_mid_load'
# (only their tallies are rewritten, the others stay). `make soak` runs the daemons for 30 minutes at
# half the measured peak with a consumer SIGKILL and a broker restart (not in CI):
# docs/reliability/soak.json and docs/reliability/soak-rss.png.
#
# Runs as root (network namespaces, setpriv, the broker's files); bounded to a few minutes.

FAULTS_DEFAULT := tests/faults tests/security
FAULTS_ARGS ?= $(FAULTS_DEFAULT)
FAULTS_JUNIT := build/faults-junit.xml
RELIABILITY_DIR := docs/reliability
SOAK_ARGS ?=

.PHONY: faults reliability-report soak

faults: export BURROW_RELIABILITY_DIR = $(RELIABILITY_DIR)
faults: ## every fault, bad-input and security test, then docs/reliability.md (root)
	@mkdir -p $(RELIABILITY_DIR) build; rm -f $(FAULTS_JUNIT); \
	$(PYTEST) -m faults --junitxml=$(FAULTS_JUNIT) \
		--log-file=build/faults-debug.log --log-file-level=DEBUG $(FAULTS_ARGS); \
	status=$$?; \
	if [ "$(FAULTS_ARGS)" = "$(FAULTS_DEFAULT)" ] && [ -s $(FAULTS_JUNIT) ]; then \
		python tests/faults/render_reliability.py --checks $(FAULTS_JUNIT) $(RELIABILITY_DIR); fi; \
	python tests/faults/render_reliability.py $(RELIABILITY_DIR) docs/reliability.md; \
	exit $$status

reliability-report: ## only re-render docs/reliability.md from the committed tallies
	python3 tests/faults/render_reliability.py $(RELIABILITY_DIR) docs/reliability.md

soak: ## the daemons 30 min at half their peak, a consumer kill, a broker restart
	@$(VENV) python tests/faults/soak.py --out $(RELIABILITY_DIR) $(SOAK_ARGS); \
	status=$$?; \
	python tests/faults/render_reliability.py $(RELIABILITY_DIR) docs/reliability.md; \
	exit $$status
