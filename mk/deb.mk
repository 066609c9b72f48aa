# The Debian package and the systemd-nspawn test hosts (included by the top-level Makefile).
#
#   make deb               build dist/burrow_<version>_<arch>.deb (reused while its inputs are unchanged;
#                          version 0.2.0~git<time>.<commit>, see scripts/build-deb.sh), linked as
#                          dist/burrow_latest.deb
#   make deb-force         rebuild it even if the inputs are unchanged
#   make system-test-deps  apt-get install the tools the system tests and the build need
#   make nspawn-root       build (or reuse) the cached Debian bookworm root of the test hosts
#   make test-hosts        prove the nspawn harness and install the .deb into a test host

.PHONY: deb deb-force deb-clean system-test-deps nspawn-root test-hosts

deb: ## dist/burrow_<version>_<arch>.deb, reused while its inputs are unchanged
	scripts/build-deb.sh

deb-force: ## rebuild the .deb even if its inputs are unchanged
	scripts/build-deb.sh --force

deb-clean: ## remove the built packages and their lintian reports from dist/
	rm -f dist/burrow_*.deb dist/burrow_*.deb.inputs dist/burrow_*.lintian.txt

system-test-deps: ## apt-get install what the system tests and the package build need
	@scripts/install-system-test-deps.sh

nspawn-root: system-test-deps ## build (or reuse) the cached Debian root of the nspawn test hosts
	scripts/build-root.sh

test-hosts: system-test-deps ## prove the nspawn harness and install the .deb into a test host (root)
	@$(PYTEST) -m system tests/system/test_hosts.py $(PYTEST_ARGS)
