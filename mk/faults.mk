# The fault and bad-input campaign (issues 6 and 13), included by the top-level Makefile.
#
#   make faults              run every fault, bad-input and security test (pytest -m faults); each
#                            load scenario rewrites its own docs/reliability/<scenario>.json (marked
#                            failed, with the reason, when its test failed), adds a line to
#                            docs/reliability/history/<scenario>.jsonl and keeps a failed run's tally
#                            in docs/reliability/failed/; the full run also rewrites
#                            docs/reliability/checks.json; then render docs/reliability.md from
#                            docs/reliability/. The run's DEBUG log (with each request's correlation
#                            id) stays in build/faults-debug.log
#   make faults FAULTS_ARGS='tests/faults/test_fault_scenarios.py::test_broker_outage_mid_load'
#                            run some scenarios: only their tallies are rewritten, the others stay
#   make faults REPEAT=50 FAULTS_ARGS=...
#                            run them 50 times in a row: every run adds to each scenario's history
#                            (the report shows "runs / failed"), a failed run's tally is kept, and
#                            its DEBUG log is kept as build/faults-debug-run<N>.log
#   make reliability-report  only re-render docs/reliability.md from the committed tallies
#   make soak                30 minutes of the daemons at half the measured peak with a consumer
#                            SIGKILL and a broker restart (not in CI): docs/reliability/soak.json
#                            and docs/reliability/soak-rss.png
#
# Runs as root (network namespaces, setpriv, the broker's files); one pass is bounded to a few
# minutes. The report scripts import the shared test helpers through PYTHONPATH (REPORT_PATH).

FAULTS_DEFAULT := tests/faults tests/security
FAULTS_ARGS ?= $(FAULTS_DEFAULT)
REPEAT ?= 1
RELIABILITY_DIR := docs/reliability
REPORT_PATH := PYTHONPATH=tests/support:tests/faults
SOAK_ARGS ?=

.PHONY: faults reliability-report soak

faults:
	@venv=$$(scripts/bootstrap-dev.sh) || exit 1; \
	mkdir -p $(RELIABILITY_DIR) build; \
	junit=build/faults-junit.xml; failed=0; \
	for run in $$(seq 1 $(REPEAT)); do \
		rm -f $$junit; \
		PATH="$$venv/bin:$$PATH" BURROW_RELIABILITY_DIR=$(RELIABILITY_DIR) \
			"$$venv/bin/python" -m pytest -ra -m faults --junitxml=$$junit \
			--log-file=build/faults-debug.log --log-file-level=DEBUG $(FAULTS_ARGS) \
			|| { failed=$$((failed + 1)); cp build/faults-debug.log build/faults-debug-run$$run.log; \
			     echo "faults: run $$run of $(REPEAT) failed; its DEBUG log is build/faults-debug-run$$run.log"; }; \
	done; \
	echo "faults: $(REPEAT) runs, $$failed failed"; \
	if [ "$(FAULTS_ARGS)" = "$(FAULTS_DEFAULT)" ] && [ "$(REPEAT)" = 1 ] && [ -s $$junit ]; then \
		$(REPORT_PATH) "$$venv/bin/python" scripts/render_reliability.py --checks $$junit $(RELIABILITY_DIR); fi; \
	$(REPORT_PATH) "$$venv/bin/python" scripts/render_reliability.py $(RELIABILITY_DIR) docs/reliability.md; \
	[ $$failed = 0 ]

reliability-report:
	$(REPORT_PATH) python3 scripts/render_reliability.py $(RELIABILITY_DIR) docs/reliability.md

soak:
	@venv=$$(scripts/bootstrap-dev.sh) || exit 1; \
	PATH="$$venv/bin:$$PATH" $(REPORT_PATH) "$$venv/bin/python" scripts/soak.py --out $(RELIABILITY_DIR) $(SOAK_ARGS); \
	status=$$?; \
	$(REPORT_PATH) "$$venv/bin/python" scripts/render_reliability.py $(RELIABILITY_DIR) docs/reliability.md; \
	exit $$status
