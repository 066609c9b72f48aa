# The fault and bad-input campaign (issues 6, 13 and 23), included by the top-level Makefile.
#
# `make faults` runs every fault, bad-input and security test (pytest -m faults); each load scenario
# rewrites its own docs/reliability/<scenario>.json (marked failed, with the reason, when its test
# failed, even before it could count), adds a line to docs/reliability/history/<scenario>.jsonl and
# keeps a failed run's tally in docs/reliability/failed/; the full run also rewrites
# docs/reliability/checks.json; then docs/reliability.md is rendered from docs/reliability/. The
# run's DEBUG log (with each request's correlation id) stays in build/faults-debug.log. Some
# scenarios only, and N times in a row (the report shows "runs / failed"; the DEBUG log of each
# failed pass is kept as build/faults-debug-run<N>.log):
#   make faults FAULTS_ARGS='tests/faults/test_fault_scenarios.py::test_broker_outage_mid_load' REPEAT=50
# (only their tallies are rewritten, the others stay). `make soak` runs the daemons for 30 minutes at
# half the measured peak with a consumer SIGKILL and a broker restart (not in CI):
# docs/reliability/soak.json and docs/reliability/soak-rss.png.
#
# Runs as root (network namespaces, setpriv, the broker's files); one pass is bounded to a few
# minutes. The report scripts in scripts/ import the shared test helpers through REPORT_PATH.

FAULTS_DEFAULT := tests/faults tests/security
FAULTS_ARGS ?= $(FAULTS_DEFAULT)
FAULTS_JUNIT := build/faults-junit.xml
REPEAT ?= 1
RELIABILITY_DIR := docs/reliability
REPORT_PATH := PYTHONPATH=tests/support:tests/faults
SOAK_ARGS ?=

.PHONY: faults reliability-report soak

faults: export BURROW_RELIABILITY_DIR = $(RELIABILITY_DIR)
faults: ## every fault, bad-input and security test, then docs/reliability.md (root)
	@$(VENV) mkdir -p $(RELIABILITY_DIR) build; failed=0; \
	for run in $$(seq 1 $(REPEAT)); do \
		rm -f $(FAULTS_JUNIT); \
		python -m pytest -ra -m faults --junitxml=$(FAULTS_JUNIT) \
			--log-file=build/faults-debug.log --log-file-level=DEBUG $(FAULTS_ARGS) \
			|| { failed=$$((failed + 1)); cp build/faults-debug.log build/faults-debug-run$$run.log; \
			     echo "faults: run $$run of $(REPEAT) failed; its DEBUG log is build/faults-debug-run$$run.log"; }; \
	done; \
	echo "faults: $(REPEAT) runs, $$failed failed"; \
	if [ "$(FAULTS_ARGS)" = "$(FAULTS_DEFAULT)" ] && [ "$(REPEAT)" = 1 ] && [ -s $(FAULTS_JUNIT) ]; then \
		$(REPORT_PATH) python scripts/render_reliability.py --checks $(FAULTS_JUNIT) $(RELIABILITY_DIR); fi; \
	$(REPORT_PATH) python scripts/render_reliability.py $(RELIABILITY_DIR) docs/reliability.md; \
	[ $$failed = 0 ]

reliability-report: ## only re-render docs/reliability.md from the committed tallies
	$(REPORT_PATH) python3 scripts/render_reliability.py $(RELIABILITY_DIR) docs/reliability.md

soak: ## the daemons 30 min at half their peak, a consumer kill, a broker restart
	@$(VENV) $(REPORT_PATH) python scripts/soak.py --out $(RELIABILITY_DIR) $(SOAK_ARGS); \
	status=$$?; \
	$(REPORT_PATH) python scripts/render_reliability.py $(RELIABILITY_DIR) docs/reliability.md; \
	exit $$status
