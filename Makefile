# Quick start: `make demo` and `make test`. Both install what they need on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
EXAMPLE := examples/flask-prod-app

.PHONY: setup demo demo-webhook test bench docs image clean k8s-bin supply-bin image-base lock

# Real components the tests run against (architecture §6): a registry, image tools, htpasswd, openssl; runc runs
# BuildKit's steps (make image) and the built image (tests/image/), debootstrap makes the tests' base image.
APT_TOOLS := docker-registry:docker-registry umoci:umoci skopeo:skopeo buildah:buildah htpasswd:apache2-utils openssl:openssl wrk:wrk
APT_TOOLS += runc:runc debootstrap:debootstrap
APT_STAMP := $(VENV)/.apt

$(APT_STAMP): Makefile
	@missing=""; for pair in $(APT_TOOLS); do command -v $${pair%%:*} >/dev/null || missing="$$missing $${pair##*:}"; done; \
	  if [ -n "$$missing" ]; then echo "installing:$$missing"; apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; fi
	@mkdir -p $(VENV) && touch $(APT_STAMP)

# One venv and three installs of the project into it. Each target takes the largest install already there, so
# `make demo` after `make test` installs nothing, and `make test` after `make demo` adds what the tests need:
# - demo: `pip install .`, the checker alone, as users install it (PyYAML, httpx, zstandard: about ten wheels);
# - server: `pip install '.[server]'`, the webhook too, for demo-webhook;
# - full: `pip install -e '.[server,test,bench]'` for the tests: editable (one .pth line naming the checkout), so
#   the tests and `.venv/bin/admission-cli` run the checkout as it is now.
# A regular install is a copy, so its stamp follows every file of the package: an edit reinstalls it.
PACKAGE := pyproject.toml $(shell find admission -type f ! -name '*.pyc' ! -path '*/__pycache__/*' 2>/dev/null)
DEMO_STAMP := $(VENV)/.installed-demo
SERVER_STAMP := $(VENV)/.installed-server
FULL_STAMP := $(VENV)/.installed-full
FOR_DEMO := $(or $(wildcard $(FULL_STAMP)),$(wildcard $(SERVER_STAMP)),$(DEMO_STAMP))
FOR_SERVER := $(or $(wildcard $(FULL_STAMP)),$(SERVER_STAMP))

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null || { apt-get update -qq && apt-get install -y -qq python3 python3-venv; }
	@$(PYTHON) -c 'import ensurepip' 2>/dev/null || { apt-get update -qq && apt-get install -y -qq python3-venv; }
	$(PYTHON) -m venv $(VENV)

$(DEMO_STAMP): $(PACKAGE) | $(BIN)/python
	$(BIN)/pip install -q .
	@touch $@

$(SERVER_STAMP): $(PACKAGE) | $(BIN)/python
	$(BIN)/pip install -q '.[server]'
	@touch $@

$(FULL_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[server,test,bench]'
	@touch $@

setup: $(FULL_STAMP)

# Exit 1 (findings) is the point of the demo; exit 2 (an input could not be read) fails it.
demo: $(FOR_DEMO)
	@echo '$$ admission-cli check $(EXAMPLE)/docker-compose.prod.yml $(EXAMPLE)/Dockerfile'
	@$(BIN)/admission-cli check $(EXAMPLE)/docker-compose.prod.yml $(EXAMPLE)/Dockerfile; rc=$$?; \
	  if [ $$rc -ge 2 ]; then echo "demo failed: exit $$rc"; exit $$rc; fi; \
	  echo; echo "exit code $$rc (1 = findings at or above --fail-on); now the fixed example:"; \
	  echo '$$ admission-cli check $(EXAMPLE)/fixed'; \
	  $(BIN)/admission-cli check $(EXAMPLE)/fixed

# Starts `admission-cli serve` on loopback with a throwaway self-signed certificate, sends the two reviews in examples/webhook-demo/
# (one allowed, one denied), prints the answers and audit lines, and stops it with SIGTERM.
demo-webhook: $(FOR_SERVER)
	@$(BIN)/python examples/webhook-demo/demo.py

# The control plane the cluster tests run (tests/cluster/): kube-apiserver, kube-controller-manager and kubectl from
# the k8s.io/kubernetes module, etcd from go.etcd.io/etcd/server/v3. Cached outside the checkout, so a second clone
# on the same machine reuses them; the log says why a build failed, and the tests skip with it (fail under CI=true).
k8s-bin:
	@command -v go >/dev/null || { echo "k8s-bin: no Go toolchain on PATH" | tee .k8s-bin.log; exit 1; }
	@set -o pipefail; bash tests/cluster/build.sh 2>&1 | tee .k8s-bin.log

# The supply-chain tools (tests/supply/): cosign, buildkitd + buildctl, kustomize, and oci-registry (go-containerregistry's
# in-memory registry with the referrers API), each from its own Go module and cache folder outside the checkout; the log
# says why a build failed, and the tests skip with it (fail under CI=true).
supply-bin:
	@command -v go >/dev/null || { echo "supply-bin: no Go toolchain on PATH" | tee .supply-bin.log; exit 1; }
	@set -o pipefail; bash tests/supply/build.sh 2>&1 | tee .supply-bin.log

# The base image (mostly downloads) is made while the Go builds (mostly CPU) run.
test: $(APT_STAMP) $(FULL_STAMP)
	@$(MAKE) --no-print-directory image-base >/dev/null 2>&1 & base=$$!; \
	  $(MAKE) --no-print-directory k8s-bin || echo "make k8s-bin failed: the control-plane tests will skip (and fail under CI=true)"; \
	  $(MAKE) --no-print-directory supply-bin || echo "make supply-bin failed: the supply-chain tests will skip (and fail under CI=true)"; \
	  wait $$base || echo "make image-base failed (.image-base.log): the image tests will skip (and fail under CI=true)"
	$(BIN)/lint-imports
	$(BIN)/python -m pytest

# Benchmarks run the project as users install it: a plain `pip install .` (not editable) in its own venv.
BENCH_VENV := .venv-bench
bench: $(APT_STAMP) $(FULL_STAMP)
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install -q '.[server,test,bench]'
	$(BENCH_VENV)/bin/pip install -q --force-reinstall --no-deps .
	$(BENCH_VENV)/bin/python bench/run.py
	$(BENCH_VENV)/bin/python bench/images.py
	$(BENCH_VENV)/bin/python bench/webhook.py
	$(BENCH_VENV)/bin/python bench/shutdown.py
	$(BENCH_VENV)/bin/python bench/audit.py
	$(BENCH_VENV)/bin/python bench/pin.py
	$(BENCH_VENV)/bin/python bench/large.py
	$(BENCH_VENV)/bin/python bench/firstrun.py

docs: $(FULL_STAMP)
	$(BIN)/python -m admission.cli.docs

# The webhook image (Dockerfile; docs/image.md), built by BuildKit with no Docker engine: buildkitd (OCI worker, runc,
# as root) is started for the build and stopped after it; BuildKit, and cosign for COSIGN_KEY, are built from their Go
# modules on first use (tests/supply/build.sh). Reproducible: one commit gives the same platform images.
#   make image IMAGE=registry.example.com/platform/admission:0.1.0 [PLATFORMS=linux/amd64,linux/arm64] [COSIGN_KEY=cosign.key]
#   make image OUTPUT=admission.oci.tar      (the default without IMAGE)
# PYTHON_IMAGE, PYTHON_DIGEST (sha256:...) and PYTHON_VERSION choose the base; SOURCE is the source URL label (default:
# the origin remote when it is public); COSIGN_ARGS adds `cosign sign` flags. BUILDKIT_STATE (environment) moves
# BuildKit's cache (default ~/.cache/admission/buildkitd-state).
image: $(APT_STAMP)
	@$(PYTHON) -c 'import ensurepip' 2>/dev/null || { apt-get update -qq && apt-get install -y -qq python3-venv; }
	$(PYTHON) tools/image/build.py --image '$(IMAGE)' --output '$(OUTPUT)' --platforms '$(PLATFORMS)' \
	  --python-image '$(PYTHON_IMAGE)' --python-digest '$(PYTHON_DIGEST)' --python-version '$(PYTHON_VERSION)' \
	  --glibc '$(GLIBC)' --cosign-key '$(COSIGN_KEY)' --cosign-args '$(COSIGN_ARGS)' \
	  --metadata '$(METADATA)' $(if $(filter undefined,$(origin SOURCE)),,--source '$(SOURCE)')

# The Debian base the image tests build on (tests/image/base.sh): debootstrap for linux/amd64 and linux/arm64, cached
# outside the checkout; the log says why a build failed, and the tests skip with it (fail under CI=true).
image-base: $(APT_STAMP)
	@set -o pipefail; bash tests/image/base.sh 2>&1 | tee .image-base.log

# requirements.lock and requirements-build.lock from pyproject.toml (tools/image/lock.py; settings in [tool.uv.pip]).
lock: setup
	$(BIN)/python tools/image/lock.py

clean:
	rm -rf $(VENV) $(BENCH_VENV) build *.egg-info admission.oci.tar
