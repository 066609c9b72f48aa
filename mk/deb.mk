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

deb: ## the .deb for this Debian release (DIST=trixie|bookworm: that release's)
	scripts/build-deb.sh $(DIST_ARG)

debs: ## one .deb for each Debian release (bookworm, trixie)
	@for dist in $(DEB_DISTS); do scripts/build-deb.sh --dist $$dist || exit 1; done

deb-force: ## rebuild the .deb even if its inputs are unchanged (DIST as for make deb)
	scripts/build-deb.sh --force $(DIST_ARG)

deb-clean: ## remove the built packages and their lintian reports from dist/
	rm -f dist/burrow_*.deb dist/burrow_*.deb.inputs dist/burrow_*.lintian.txt

system-test-deps: ## apt-get install what the system tests and the package build need
	@scripts/install-system-test-deps.sh

nspawn-root: system-test-deps ## build (or reuse) the cached test host root (DIST, default trixie)
	scripts/build-root.sh --suite $(or $(DIST),trixie)

test-hosts: system-test-deps ## prove the nspawn harness and install the .deb into a test host (root)
	@$(PYTEST) -m system tests/system/test_hosts.py $(PYTEST_ARGS)
