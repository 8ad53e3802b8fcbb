# One machine, one command: `make demo` runs the walking skeleton end to end; `make test` passes
# the suite. Both set everything up from nothing (venv, runner image) and are safe to re-run.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: system install image server-image demo test lint unit clean compose-up compose-down

# Debian packages (debootstrap, docker-compose) and a running Docker engine; no-op when present.
system:
	bash scripts/system-setup

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $@

install: $(STAMP)

image: system $(STAMP)
	$(BIN)/unseen images build

server-image: system $(STAMP)
	$(BIN)/unseen images build --server

# The embedded server in a container (docker-compose.yml); state under var/compose.
COMPOSE_DIR ?= $(CURDIR)/var/compose
compose-up: server-image
	mkdir -p $(COMPOSE_DIR)
	UNSEEN_HOST_DIR=$(COMPOSE_DIR) docker-compose up -d
	@echo "server on http://127.0.0.1:8000; bootstrap token in $(COMPOSE_DIR)/server/bootstrap-token"

compose-down:
	UNSEEN_HOST_DIR=$(COMPOSE_DIR) docker-compose down

demo: image
	$(BIN)/python examples/demo.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: image lint
	$(BIN)/pytest -q -ra

unit: $(STAMP)
	$(BIN)/pytest -q -m "not docker"

clean:
	rm -rf $(VENV) var images/runner/wheels images/server/wheels
