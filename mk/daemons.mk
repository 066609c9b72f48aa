# The daemons' service layer and their systemd units (included by the top-level Makefile).
#
#   make daemons-unit      unit tests of the HTTP API, journald logging and sd_notify (real sockets)
#   make units-security    systemd-analyze security --offline of every unit in systemd/ (<= 0.9)
#   make daemons-system    the daemons as systemd services in an nspawn container (needs root)

UNIT_MAX_EXPOSURE ?= 0.9
DAEMON_UNITS := systemd/burrow-consumer.service systemd/burrow-consumer@.service systemd/burrow-producer.service

.PHONY: daemons-unit units-security daemons-system

daemons-unit:
	@venv=$$(scripts/bootstrap-dev.sh) && "$$venv/bin/python" -m pytest -ra \
		tests/unit/test_httpapi.py tests/unit/test_journal.py tests/unit/test_notify.py $(PYTEST_ARGS)

# Prints each unit's exposure and fails when one is above $(UNIT_MAX_EXPOSURE).
units-security:
	@status=0; for unit in $(DAEMON_UNITS); do \
		score=$$(systemd-analyze security --offline=yes --no-pager "$$unit" \
			| sed -n 's/.*Overall exposure level for .*: \([0-9.]*\).*/\1/p'); \
		echo "$$unit: $$score"; \
		if [ -z "$$score" ] || ! awk -v s="$$score" -v max="$(UNIT_MAX_EXPOSURE)" 'BEGIN { exit !(s <= max) }'; then \
			echo "$$unit: exposure $$score is above $(UNIT_MAX_EXPOSURE)" >&2; status=1; fi; \
	done; exit $$status

daemons-system: system-test-deps
	@venv=$$(scripts/bootstrap-dev.sh) && "$$venv/bin/python" -m pytest -ra -m system \
		tests/system/test_daemons.py $(PYTEST_ARGS)
