# The Debian package and the systemd-nspawn test hosts (included by the top-level Makefile).
#
#   make deb               build dist/burrow_<version>_<arch>.deb for this machine's Debian release
#                          (reused while its inputs are unchanged; version
#                          0.2.0~git<time>.<commit>~deb<N>u1, see scripts/build-deb.sh), linked as
#                          dist/burrow_latest_deb<N>.deb and dist/burrow_latest.deb
#   make deb DIST=trixie   the same for another release (trixie = Debian 13, bookworm = Debian 12),
#                          built inside a cached nspawn root of it; linked as dist/burrow_latest_deb<N>.deb
#   make debs              one package for each release (DEB_DISTS)
#   make deb-force         rebuild it even if the inputs are unchanged (DIST as for make deb)
#   make system-test-deps  apt-get install the tools the system tests and the build need
#   make nspawn-root       build (or reuse) the cached Debian root of the test hosts (DIST, default trixie)
#   make test-hosts        prove the nspawn harness and install the .deb into a test host

DIST ?=
DEB_DISTS := bookworm trixie
DIST_ARG = $(if $(DIST),--dist $(DIST))

.PHONY: deb debs deb-force deb-clean system-test-deps nspawn-root test-hosts

deb:
	scripts/build-deb.sh $(DIST_ARG)

debs:
	@for dist in $(DEB_DISTS); do scripts/build-deb.sh --dist $$dist || exit 1; done

deb-force:
	scripts/build-deb.sh --force $(DIST_ARG)

deb-clean:
	rm -f dist/burrow_*.deb dist/burrow_*.deb.inputs dist/burrow_*.lintian.txt

system-test-deps:
	scripts/install-system-test-deps.sh

nspawn-root: system-test-deps
	scripts/build-root.sh --suite $(or $(DIST),trixie)

test-hosts: system-test-deps
	@venv=$$(scripts/bootstrap-dev.sh) && "$$venv/bin/python" -m pytest -ra -m system \
		tests/system/test_hosts.py $(PYTEST_ARGS)
