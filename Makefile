# Quick start: `make demo` and `make test`. Both install what they need on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
EXAMPLE := examples/flask-prod-app

.PHONY: setup demo demo-webhook test bench docs image clean k8s-bin supply-bin

# Real components the tests run against (architecture §6): a registry, image tools, htpasswd, openssl.
APT_TOOLS := docker-registry:docker-registry umoci:umoci skopeo:skopeo buildah:buildah htpasswd:apache2-utils openssl:openssl wrk:wrk
APT_STAMP := $(VENV)/.apt

$(APT_STAMP):
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

test: $(APT_STAMP) $(FULL_STAMP)
	@$(MAKE) --no-print-directory k8s-bin || echo "make k8s-bin failed: the control-plane tests will skip (and fail under CI=true)"
	@$(MAKE) --no-print-directory supply-bin || echo "make supply-bin failed: the supply-chain tests will skip (and fail under CI=true)"
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

# The webhook image (Dockerfile). Needs a Docker engine with BuildKit; none runs on the project's own machines.
# IMAGE=registry.example.com/admission:0.1.0 make image; PYTHON_DIGEST=sha256:... pins the base image too.
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
IMAGE ?= admission:$(VERSION)
image:
	@docker info >/dev/null 2>&1 || { echo "make image: no Docker engine is reachable here; build where one runs"; exit 1; }
	DOCKER_BUILDKIT=1 docker build --pull -t $(IMAGE) \
	  --build-arg VERSION=$(VERSION) \
	  --build-arg PYTHON_DIGEST=$(PYTHON_DIGEST) \
	  --build-arg SOURCE=$$(git config --get remote.origin.url || echo unknown) \
	  --build-arg REVISION=$$(git rev-parse HEAD) \
	  --build-arg CREATED=$$(date -u +%Y-%m-%dT%H:%M:%SZ) \
	  .

clean:
	rm -rf $(VENV) $(BENCH_VENV) build *.egg-info
