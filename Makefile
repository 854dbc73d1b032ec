# Two entry points (see README): `make demo` runs the main job, `make test` runs the suite.
# Both install what they need on a fresh Debian 12 machine (apt packages as root, a venv).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
APT_PACKAGES := busybox-static skopeo umoci runc fuse-overlayfs docker-registry attr git openssh-client \
	ca-certificates tar openssl apache2-utils crun buildah mmdebstrap uidmap util-linux python3.11 tini
PYTEST_WORKERS ?= 2

# The unprivileged user the rootless tests run lamina as (tests/e2e, needs_rootless). They run
# the system python3.11 (apt list) with the venv's site-packages when the venv's interpreter is
# out of that user's reach (pyenv under /root).
ROOTLESS_USER := lamina-ci
ROOTLESS_SUBIDS := 200000-265535

.PHONY: demo test deps apt venv compile lint typecheck bench clean rootless-user

demo: deps
	./scripts/demo.sh

test: deps lint typecheck rootless-user
	$(BIN)/pytest -n $(PYTEST_WORKERS) -p no:cacheprovider tests

deps: apt venv compile

# Byte-compile so CLI start-up does not pay for compiling, even where the environment sets
# PYTHONDONTWRITEBYTECODE (Python still reads existing .pyc files). Only changed files compile.
compile: venv
	$(BIN)/python -m compileall -q src \
	  "$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" >/dev/null

# Installs only what is missing, so a warm machine pays nothing.
apt:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then echo "missing apt packages:$$missing (run as root)"; exit 1; fi; \
	  echo "installing:$$missing"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

# Idempotent, as root only: the user, its /etc/subuid and /etc/subgid ranges (useradd may add
# its own), and o+x on the checkout's parents so the user reaches src/ and the venv's
# site-packages (the tests fall back to the system python when the venv's is unreachable).
rootless-user: apt
	@if [ "$$(id -u)" = 0 ]; then \
	  id -u $(ROOTLESS_USER) >/dev/null 2>&1 || useradd -m -s /bin/sh $(ROOTLESS_USER); \
	  grep -q "^$(ROOTLESS_USER):" /etc/subuid || usermod --add-subuids $(ROOTLESS_SUBIDS) $(ROOTLESS_USER); \
	  grep -q "^$(ROOTLESS_USER):" /etc/subgid || usermod --add-subgids $(ROOTLESS_SUBIDS) $(ROOTLESS_USER); \
	  d="$(CURDIR)"; while [ "$$d" != / ]; do \
	    [ "$$(( 0$$(stat -c %a "$$d") & 1 ))" = 1 ] || { echo "chmod o+x $$d"; chmod o+x "$$d"; }; \
	    d=$$(dirname "$$d"); \
	  done; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]'
	touch $@

lint: venv
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: venv
	$(BIN)/mypy --strict src/lamina

bench: deps
	$(BIN)/python bench/bench_store.py

clean:
	rm -rf $(VENV) .cache .mypy_cache .ruff_cache .pytest_cache
