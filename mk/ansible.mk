# The deployment files: Ansible roles, Vagrantfile, systemd units (included by the top-level Makefile).
#
# `make test-static` is tests/system/test_static_checks.py: ansible-lint --profile production over
# ansible/ (a cached venv, see ansible/lint.sh), `vagrant validate --ignore-provider` for one broker and
# for clusters (Debian's vagrant, installed without recommends, has no VirtualBox/libvirt provider),
# and `systemd-analyze security --offline` of every unit in systemd/ (exposure at most 0.9).
# `make test-deploy` runs the playbook against booted nspawn hosts (needs root). Both are part of `make test`.

.PHONY: test-static test-deploy

test-static: system-test-deps ## ansible-lint, vagrant validate, systemd-analyze security of the units
	@$(PYTEST) tests/system/test_static_checks.py $(PYTEST_ARGS)

test-deploy: system-test-deps ## site.yml over SSH onto booted nspawn hosts, run twice (root)
	@$(PYTEST) -m system tests/system/test_deploy.py $(PYTEST_ARGS)
