# The fault and bad-input campaign (issues 6 and 13), included by the top-level Makefile.
#
#   make faults              run every fault, bad-input and security test (pytest -m faults); each
#                            load scenario rewrites its own docs/reliability/<scenario>.json, the
#                            full run also rewrites docs/reliability/checks.json; then render
#                            docs/reliability.md from docs/reliability/. The run's DEBUG log (with
#                            each request's correlation id) stays in build/faults-debug.log
#   make faults FAULTS_ARGS='tests/faults/test_fault_scenarios.py::test_broker_crash_mid_load'
#                            run some scenarios: only their tallies are rewritten, the others stay
#   make reliability-report  only re-render docs/reliability.md from the committed tallies
#   make soak                30 minutes of the daemons at half the measured peak with a consumer
#                            SIGKILL and a broker restart (not in CI): docs/reliability/soak.json
#                            and docs/reliability/soak-rss.png
#
# Runs as root (network namespaces, setpriv, the broker's files); bounded to a few minutes.

FAULTS_DEFAULT := tests/faults tests/security
FAULTS_ARGS ?= $(FAULTS_DEFAULT)
RELIABILITY_DIR := docs/reliability
SOAK_ARGS ?=

.PHONY: faults reliability-report soak

faults:
	@venv=$$(scripts/bootstrap-dev.sh) || exit 1; \
	mkdir -p $(RELIABILITY_DIR) build; \
	junit=build/faults-junit.xml; rm -f $$junit; \
	PATH="$$venv/bin:$$PATH" BURROW_RELIABILITY_DIR=$(RELIABILITY_DIR) \
		"$$venv/bin/python" -m pytest -ra -m faults --junitxml=$$junit \
		--log-file=build/faults-debug.log --log-file-level=DEBUG $(FAULTS_ARGS); \
	status=$$?; \
	if [ "$(FAULTS_ARGS)" = "$(FAULTS_DEFAULT)" ] && [ -s $$junit ]; then \
		"$$venv/bin/python" tests/faults/render_reliability.py --checks $$junit $(RELIABILITY_DIR); fi; \
	"$$venv/bin/python" tests/faults/render_reliability.py $(RELIABILITY_DIR) docs/reliability.md; \
	exit $$status

reliability-report:
	python3 tests/faults/render_reliability.py $(RELIABILITY_DIR) docs/reliability.md

soak:
	@venv=$$(scripts/bootstrap-dev.sh) || exit 1; \
	PATH="$$venv/bin:$$PATH" "$$venv/bin/python" tests/faults/soak.py --out $(RELIABILITY_DIR) $(SOAK_ARGS); \
	status=$$?; \
	"$$venv/bin/python" tests/faults/render_reliability.py $(RELIABILITY_DIR) docs/reliability.md; \
	exit $$status
