# The Debian package and the systemd-nspawn test hosts (included by the top-level Makefile).
#
#   make deb               build dist/burrow_<version>_<arch>.deb (reused while its inputs are unchanged)
#   make deb-force         rebuild it even if the inputs are unchanged
#   make system-test-deps  apt-get install the tools the system tests and the build need
#   make nspawn-root       build (or reuse) the cached Debian bookworm root of the test hosts
#   make test-hosts        prove the nspawn harness and install the .deb into a test host

.PHONY: deb deb-force deb-clean system-test-deps nspawn-root test-hosts

deb:
	scripts/build-deb.sh

deb-force:
	scripts/build-deb.sh --force

deb-clean:
	rm -f dist/burrow_*.deb dist/burrow_*.deb.inputs dist/burrow_*.lintian.txt

system-test-deps:
	scripts/install-system-test-deps.sh

nspawn-root: system-test-deps
	scripts/build-root.sh

test-hosts: system-test-deps
	@venv=$$(scripts/bootstrap-dev.sh) && "$$venv/bin/python" -m pytest -ra -m system \
		tests/system/test_hosts.py $(PYTEST_ARGS)
