# One machine, one command: `make demo` runs the walking skeleton end to end; `make test` passes
# the suite. Both set everything up from nothing (venv, runner image) and are safe to re-run.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install image demo test lint unit clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $@

install: $(STAMP)

image: $(STAMP)
	$(BIN)/unseen images build

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
	rm -rf $(VENV) var images/runner/wheels
