# The blue-green move of a live deployment from Debian 12 to Debian 13 (ansible/migrate-blue-green.yml,
# issue 24), included by the top-level Makefile.
#
# tests/system/test_migrate_blue_green.py boots three nspawn hosts (blue: Debian 12 broker and
# consumer; app: Debian 12 producer; green: Debian 13 broker and consumer), deploys blue and app with
# site.yml, then runs the migration playbook under load and counts every request by id; its tally
# goes to $(MIGRATE_RELIABILITY_DIR)/migrate-blue-green.json. Not part of `make test` (its 40-minute
# budget is spent): run it on its own. Needs root.

MIGRATE_RELIABILITY_DIR ?= build/reliability

.PHONY: test-migrate

test-migrate: export BURROW_RELIABILITY_DIR = $(MIGRATE_RELIABILITY_DIR)
test-migrate: system-test-deps ## migrate-blue-green.yml, Debian 12 to 13 under load, counted by id (root)
	@$(PYTEST) -m system tests/system/test_migrate_blue_green.py $(PYTEST_ARGS)
