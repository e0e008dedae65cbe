# Higress standalone initializer. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
VOLUMES ?= ./volumes
IMAGE ?= higress-init:dev
# HIGRESS_VERSION=2.1.2 (make up, down): that release's image set over compose/.env's (2.2.4's)
COMPOSE := docker compose -f compose/docker-compose.yml --env-file compose/.env \
           $(if $(wildcard compose/higress-$(HIGRESS_VERSION).env),--env-file compose/higress-$(HIGRESS_VERSION).env)
# The built-in Nacos's token secret and server identity: random, made once per clone, root's only,
# never committed; compose reads it (a published default would let anyone mint Nacos tokens).
NACOS_AUTH_ENV ?= compose/nacos-auth.env

# r-nacos, the real Nacos-compatible server the tests run against: built once per machine
# into a cache outside the repo, pinned, and reused when that version is already there.
RNACOS_VERSION := 0.8.8
RNACOS_ROOT ?= $(HOME)/.cache/higress-init/rnacos-$(RNACOS_VERSION)
export RNACOS_BIN := $(RNACOS_ROOT)/bin/rnacos

# The compose CLI plugin, for `docker compose config` in the tests (it needs no engine): built
# once per machine from the Go module proxy into the same cache, pinned. `go install` refuses this
# module (its go.mod has exclude directives), so it is downloaded, then built in place.
COMPOSE_VERSION := 2.40.3
COMPOSE_ROOT ?= $(HOME)/.cache/higress-init/compose-v$(COMPOSE_VERSION)
export COMPOSE_PLUGIN := $(COMPOSE_ROOT)/cli-plugins/docker-compose

# uv creates and syncs every environment from the lock file (install.sh for the image and the tests,
# and .venv here): pinned (as in install.sh and the Dockerfile), installed once per machine from
# PyPI into the same cache, and reused.
UV_VERSION := 0.13.9
UV_ROOT ?= $(HOME)/.cache/higress-init/uv-$(UV_VERSION)
export UV := $(UV_ROOT)/bin/uv
# uv trusts the system's certificate store, as pip does: a host behind a TLS-inspecting proxy has its CA there
export UV_SYSTEM_CERTS ?= 1

# Real Nacos 2.5.1 and 3.0.1, the servers the Nacos tests stand on: Maven Central does not publish
# the Nacos server, so each is built once per machine from the upstream release source in
# ../shared/nacos/ (every build dependency is on Maven Central) into the same cache, and reused.
# Where ../shared is absent, the official release of the same version is taken instead.
NACOS_VERSIONS := 2.5.1 3.0.1
NACOS_SRC ?= $(firstword $(wildcard $(abspath ../shared/nacos) /work/shared/nacos) $(abspath ../shared/nacos))
export NACOS_CACHE ?= $(HOME)/.cache/higress-init
NACOS_JARS := $(foreach v,$(NACOS_VERSIONS),$(NACOS_CACHE)/nacos-$(v)/nacos-server.jar)
MVN_SKIP := -Dmaven.test.skip=true -Drat.skip=true -Dcheckstyle.skip=true -Dpmd.skip=true -Djacoco.skip=true \
            -Dmaven.javadoc.skip=true -Dgpg.skip

.PHONY: help run test unit lint bench bench-readme image up down status rotate clean completion

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}' \
	  | sed -e 's|$$(VOLUMES)|$(VOLUMES)|g' -e 's|$$(IMAGE)|$(IMAGE)|g'

# the lock synced exactly (hash-checked; nothing else stays installed), then the package, editable
$(BIN)/higress-init: initContainer/requirements.lock initContainer/pyproject.toml $(UV)
	@echo "make: installing the initializer into $(VENV)/ with uv: the pinned, hash-checked dependencies of initContainer/requirements.lock"
	$(PYTHON) -m venv --without-pip $(VENV)
	UV_PYTHON=$(BIN)/python $(UV) pip sync --require-hashes initContainer/requirements.lock
	@echo "make: the initializer itself (editable), then uv pip check"
	UV_PYTHON=$(BIN)/python $(UV) pip install --quiet -e initContainer
	UV_PYTHON=$(BIN)/python $(UV) pip check --quiet
	@touch $@

$(VENV)/.test-deps: $(BIN)/higress-init tests/requirements.txt
	UV_PYTHON=$(BIN)/python $(UV) pip install --quiet -r tests/requirements.txt
	UV_PYTHON=$(BIN)/python $(UV) pip check --quiet
	@touch $@

$(UV):
	rm -rf $(UV_ROOT).partial
	$(PYTHON) -m venv $(UV_ROOT).partial
	$(UV_ROOT).partial/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	rm -rf $(UV_ROOT) && mv $(UV_ROOT).partial $(UV_ROOT)

$(RNACOS_BIN):
	@command -v cargo >/dev/null || { echo "cargo is needed to build r-nacos: install Rust (rustup)"; exit 1; }
	cargo install --locked rnacos --version $(RNACOS_VERSION) --root $(RNACOS_ROOT)

$(COMPOSE_PLUGIN):
	@command -v go >/dev/null || { echo "go is needed to build the compose CLI plugin: install Go (https://go.dev/dl)"; exit 1; }
	mkdir -p $(dir $@)
	dir=$$(GOFLAGS=-mod=mod go mod download -json github.com/docker/compose/v2@v$(COMPOSE_VERSION) \
	       | $(PYTHON) -c 'import json, sys; print(json.load(sys.stdin)["Dir"])') && \
	cd "$$dir" && GOFLAGS=-mod=mod go build -trimpath \
	  -ldflags "-w -X github.com/docker/compose/v2/internal.Version=v$(COMPOSE_VERSION)" -o $@.partial ./cmd
	mv $@.partial $@

$(NACOS_CACHE)/nacos-%/nacos-server.jar:
	@command -v java >/dev/null || { echo "java is needed to run Nacos $*: install a JDK 17 (apt-get install openjdk-17-jdk-headless)"; exit 1; }
	rm -rf $(@D).partial && mkdir -p $(@D).partial
	if [ -f $(NACOS_SRC)/nacos-$*-src.tar.gz ]; then \
	  command -v mvn >/dev/null || { echo "mvn is needed to build Nacos $* from source: install Maven (apt-get install maven)"; exit 1; }; \
	  module=$$(case $* in 2.*) echo console;; *) echo bootstrap;; esac); \
	  tar -xzf $(NACOS_SRC)/nacos-$*-src.tar.gz -C $(@D).partial && \
	  (cd $(@D).partial/nacos-$* && mvn -B -q -Prelease-nacos $(MVN_SKIP) -pl $$module -am package) && \
	  cp $(@D).partial/nacos-$*/$$module/target/nacos-server.jar $(@D).partial/ && \
	  cp -r $(@D).partial/nacos-$*/distribution/conf $(@D).partial/conf && \
	  rm -rf $(@D).partial/nacos-$*; \
	else \
	  curl -fsSL https://github.com/alibaba/nacos/releases/download/$*/nacos-server-$*.tar.gz \
	    | tar -xz -C $(@D).partial && mv $(@D).partial/nacos/target/nacos-server.jar $(@D).partial/ && \
	  mv $(@D).partial/nacos/conf $(@D).partial/conf && rm -rf $(@D).partial/nacos; \
	fi
	rm -rf $(@D) && mv $(@D).partial $(@D)

run: $(BIN)/higress-init ## install into .venv/ and run the initializer on the embedded default (file store)
	$(BIN)/higress-init run --volumes $(VOLUMES)

test: lint $(VENV)/.test-deps $(RNACOS_BIN) $(COMPOSE_PLUGIN) $(NACOS_JARS) ## make lint, then install what the tests need (real Nacos 2.5.1 and 3.0.1, r-nacos and the compose plugin) and run them all
	$(BIN)/pytest -q --durations=25 tests

# The tests that need no cargo, Go or Java build (no r-nacos, real Nacos or compose plugin) and take
# well under a minute on 2 cores: the modules' own checks, settings, PKI, tokens, volume writes and the
# release tables. A quick check while editing; `make test` runs these and all the others.
UNIT_TESTS := test_modules test_settings test_pki test_artifacts test_tokens test_volume test_kubeconfig \
              test_meshconfig test_objects test_versions
unit: $(VENV)/.test-deps ## the fast tests alone (no r-nacos, Nacos or compose plugin needed; under a minute)
	$(BIN)/pytest -q --durations=5 $(UNIT_TESTS:%=tests/%.py)

lint: $(VENV)/.test-deps ## hadolint the Dockerfile, check the compose file against the compose-spec schema, ruff (ruff.toml) and mypy (mypy.ini)
	$(BIN)/hadolint Dockerfile
	$(BIN)/python tests/compose_schema.py
	$(BIN)/ruff check initContainer/higress_init tests bench
	$(BIN)/mypy

# shtab writes the completion scripts from the CLI's own parser (build_parser) each time: they can't
# fall out of step with it. A build-time tool, installed into .venv only here, not into the image.
SHTAB_VERSION := 1.13.0
completion: $(BIN)/higress-init ## bash and zsh completion, generated from the CLI's parser into completion/
	UV_PYTHON=$(BIN)/python $(UV) pip install --quiet shtab==$(SHTAB_VERSION)
	mkdir -p completion
	$(BIN)/python -m shtab -u --shell=bash higress_init.cli.main.build_parser > completion/higress-init.bash
	$(BIN)/python -m shtab -u --shell=zsh higress_init.cli.main.build_parser > completion/_higress-init
	@echo "bash: source completion/higress-init.bash; zsh: fpath=($$PWD/completion \$$fpath) in .zshrc"

bench: $(VENV)/.test-deps $(RNACOS_BIN) $(NACOS_JARS) ## cold and warm runs, file store and real Nacos, as ratios measured side by side (BENCH_BEFORE=rev: that revision too)
	$(BIN)/python bench/bench.py

bench-readme: ## regenerate the README's performance table from the last `make bench`
	$(PYTHON) bench/readme_table.py bench/results/bench.json README.md

image: ## build the initializer image (needs a Docker engine)
	docker build -t $(IMAGE) .

$(NACOS_AUTH_ENV):
	mkdir -p $(@D) && umask 077 && $(PYTHON) -c 'import base64, secrets; print("NACOS_AUTH_TOKEN=" + base64.b64encode(secrets.token_bytes(48)).decode()); print("NACOS_AUTH_IDENTITY_KEY=" + secrets.token_hex(16)); print("NACOS_AUTH_IDENTITY_VALUE=" + secrets.token_hex(32))' > $@.partial
	mv $@.partial $@

up: $(NACOS_AUTH_ENV) ## start the whole standalone stack with compose, built-in Nacos included (needs a Docker engine; HIGRESS_VERSION=2.1.2 for that release)
	$(COMPOSE) up -d

down: $(NACOS_AUTH_ENV) ## stop the compose stack
	$(COMPOSE) down

# A deployment compose made (its recorded DEPLOYED_BY names the compose file) is checked and rotated
# through that file, as `docker compose run --rm initializer status` does: with the initializer's
# environment and network (Nacos by its compose name, the owners). The record is root's: run as root.
DEPLOYED_BY = $(shell sed -n 's/^ *"DEPLOYED_BY": "\(compose\/[A-Za-z0-9._-]*\)",\{0,1\}$$/\1/p' \
                $(VOLUMES)/.higress-init/settings.json 2>/dev/null)
DEPLOYED_COMPOSE = docker compose -f $(DEPLOYED_BY) --env-file compose/.env
INITIALIZER = $(if $(DEPLOYED_BY),VOLUMES_DIR=$(abspath $(VOLUMES)) $(DEPLOYED_COMPOSE) run --rm initializer,$(BIN)/higress-init)
ON_VOLUMES = $(if $(DEPLOYED_BY),,--volumes $(VOLUMES))

status: $(if $(DEPLOYED_BY),,$(BIN)/higress-init) ## check every certificate, key and generated file in $(VOLUMES) (through compose when compose made it)
	$(INITIALIZER) status $(ON_VOLUMES)

rotate: $(if $(DEPLOYED_BY),,$(BIN)/higress-init) ## rotate leaf certificates in $(VOLUMES) (KIND=leaf|intermediate|root|finish; through compose when compose made it)
	$(INITIALIZER) rotate $(or $(KIND),leaf) $(ON_VOLUMES)

# What `make clean` never deletes unasked: the CA keys and the data key (volume/layout.py names them);
# lost, they mean a new PKI and Secrets in Nacos that can no longer be read.
CLEAN_GUARDED := volumes/pki/apiserver-ca.key volumes/pki/pilot-root-ca.key volumes/pilot/cacerts/ca-key.pem \
                 volumes/api/nacos.key

clean: ## remove .venv/, ./volumes and caches (asks first when ./volumes holds CA keys or the data key; FORCE=1: no question)
	@keys="$$(for f in $(CLEAN_GUARDED); do [ -e "$$f" ] && echo "$$f"; done)"; \
	if [ -n "$$keys" ] && [ "$(FORCE)" != 1 ]; then \
	  echo "make clean would delete the CA keys and the data key:" $$keys; \
	  if [ -t 0 ]; then \
	    read -r -p "delete them with ./volumes? type yes: " answer; \
	    [ "$$answer" = yes ] || { echo "make clean: nothing deleted"; exit 1; }; \
	  else \
	    echo "make clean: refused (no terminal to ask): copy them somewhere first, or run make clean FORCE=1"; exit 1; \
	  fi; \
	fi
	rm -rf $(VENV) volumes .pytest_cache bench/results completion
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
