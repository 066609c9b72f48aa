# The fault and bad-input campaign (issue 6), included by the top-level Makefile.
#
#   make faults              run every fault, bad-input and security test (pytest -m faults), then
#                            write docs/reliability.md from the counts of that run
#   make faults FAULTS_ARGS='tests/faults/test_fault_scenarios.py::test_broker_restart_mid_load'
#                            run one scenario (the report keeps the other tests' last full-run results)
#   make reliability-report  only re-render docs/reliability.md from build/reliability/
#
# Runs as root (network namespaces, setpriv, the broker's files); bounded to a few minutes.

FAULTS_DEFAULT := tests/faults tests/security
FAULTS_ARGS ?= $(FAULTS_DEFAULT)
RELIABILITY_DIR := build/reliability

.PHONY: faults reliability-report

faults:
	@venv=$$(scripts/bootstrap-dev.sh) || exit 1; \
	mkdir -p $(RELIABILITY_DIR); \
	junit=$(RELIABILITY_DIR)/junit-partial.xml; \
	if [ "$(FAULTS_ARGS)" = "$(FAULTS_DEFAULT)" ]; then rm -f $(RELIABILITY_DIR)/*.json; junit=$(RELIABILITY_DIR)/junit.xml; fi; \
	PATH="$$venv/bin:$$PATH" BURROW_RELIABILITY_DIR=$(RELIABILITY_DIR) \
		"$$venv/bin/python" -m pytest -ra -m faults --junitxml=$$junit $(FAULTS_ARGS); \
	status=$$?; \
	"$$venv/bin/python" tests/faults/render_reliability.py $(RELIABILITY_DIR) docs/reliability.md; \
	exit $$status

reliability-report:
	python3 tests/faults/render_reliability.py $(RELIABILITY_DIR) docs/reliability.md
