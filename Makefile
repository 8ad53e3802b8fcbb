# One machine, one command: `make demo` runs the walking skeleton end to end; `make test` passes
# the suite. Both set everything up from nothing (venv, runner image) and are safe to re-run.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: system runsc install image server-image demo test lint unit clean compose-up compose-down \
	compose-demo

# Debian packages (debootstrap, docker-compose) and a running Docker engine; no-op when present.
system:
	bash scripts/system-setup

# gVisor's runsc from Debian, registered with the running Docker engine by a reload (running
# containers live on); nodes then run their sandboxes under it by default (UNSEEN_RUNTIME).
runsc:
	bash scripts/runsc-setup

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $@

install: $(STAMP)

image: system $(STAMP)
	$(BIN)/unseen images build

server-image: system $(STAMP)
	$(BIN)/unseen images build --server

# The scale-out stack (docker-compose.yml): API on PostgreSQL, Redis, data nodes node-a and
# node-b; every image built here. State under var/compose; put a node's files in its directory.
COMPOSE_DIR ?= $(CURDIR)/var/compose
COMPOSE := set -a && . $(COMPOSE_DIR)/secrets.env && set +a && \
	UNSEEN_HOST_DIR=$(COMPOSE_DIR) docker-compose -p unseen
# The database's and the broker's passwords (the API's, each node's), made once and kept with
# the stack's state.
$(COMPOSE_DIR)/secrets.env:
	mkdir -p $(COMPOSE_DIR)
	umask 077; for who in DB REDIS_HUB REDIS_NODE_A REDIS_NODE_B; do \
	  echo "UNSEEN_$${who}_PASSWORD=$$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"; \
	done > $@

compose-up: server-image $(COMPOSE_DIR)/secrets.env
	mkdir -p $(COMPOSE_DIR)/server $(COMPOSE_DIR)/node-a $(COMPOSE_DIR)/node-b
	$(COMPOSE) build redis postgres
	$(COMPOSE) up -d
	@echo "API on http://127.0.0.1:8000; bootstrap token in $(COMPOSE_DIR)/server/bootstrap-token"

compose-down: $(COMPOSE_DIR)/secrets.env
	$(COMPOSE) down

# The demo flow against a fresh stack (its own project; stopped at the end).
compose-demo: server-image
	$(BIN)/python -m examples.compose_demo

demo: image
	$(BIN)/python examples/demo.py

# mypy's settings are in pyproject.toml; the runner image's scripts import each other as
# top-level modules, as they are laid out in the image, so they are checked on their own.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	MYPYPATH=images/runner $(BIN)/mypy images/runner

# Everything, PostgreSQL included: without a reachable server its tests fail, never skip.
# tests/test_compose.py runs beside the rest, in its own pytest process (scripts/run-tests).
test: image lint
	bash scripts/run-tests

# The inner loop, under 30 s: no Docker, no statistical audits or process-kill tests (both
# marked, see pyproject.toml); a PostgreSQL test skips, saying why, when no server answers.
unit: $(STAMP)
	UNSEEN_UNIT=1 $(BIN)/pytest -q -ra -m "not docker and not slow"

clean:
	rm -rf $(VENV) var images/runner/wheels images/server/wheels
