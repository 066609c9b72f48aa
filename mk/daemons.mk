# The daemons' service layer and their systemd units (included by the top-level Makefile).
#
# test-daemons-unit runs the unit tests of the HTTP API, journald logging and sd_notify (real
# sockets, no broker); test-daemons boots an nspawn container and runs the daemons in it as systemd
# services (needs root). The units' offline security score is checked by `make test-static`.

.PHONY: test-daemons-unit test-daemons

test-daemons-unit: ## the HTTP API, journald logging and sd_notify, on real sockets
	@$(PYTEST) tests/unit/test_httpapi.py tests/unit/test_journal.py tests/unit/test_notify.py $(PYTEST_ARGS)

test-daemons: system-test-deps ## the daemons as systemd services in a booted nspawn container (root)
	@$(PYTEST) -m system tests/system/test_daemons.py $(PYTEST_ARGS)
