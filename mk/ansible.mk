# Ansible roles and the deployment test (included by the top-level Makefile).
#
#   make ansible-lint   ansible-lint --profile production over ansible/ (cached venv, see ansible/lint.sh)
#   make deploy-test    the playbook against booted nspawn hosts (tests/system/test_deploy.py, needs root)
#   make lint           includes ansible-lint;  make deploy-test is also part of `make test`
#   make vagrant-validate   check the Vagrantfile, one broker and a 3-broker cluster on Debian 13, and
#                           one broker on Debian 12 (BURROW_DEBIAN=12) (installs Debian's
#                           vagrant; --ignore-provider, since a vagrant installed without recommends has
#                           no VirtualBox/libvirt provider)

.PHONY: lint ansible-lint deploy-test vagrant-validate

lint: ansible-lint

ansible-lint:
	ansible/lint.sh

deploy-test: system-test-deps
	@venv=$$(scripts/bootstrap-dev.sh) && "$$venv/bin/python" -m pytest -ra -m system \
		tests/system/test_deploy.py $(PYTEST_ARGS)

vagrant-validate:
	@command -v vagrant >/dev/null || apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends vagrant >/dev/null
	vagrant validate --ignore-provider
	BURROW_BROKERS=3 BURROW_CONSUMERS=2 vagrant validate --ignore-provider
	BURROW_DEBIAN=12 vagrant validate --ignore-provider
	! BURROW_DEBIAN=11 vagrant validate --ignore-provider 2>/dev/null
