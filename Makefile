# prefloop: `make run` sets up and serves the platform; `make test` sets up and runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# the CPU build of torch, installed before the project so pip never pulls a CUDA build
TORCH_SPEC ?= torch==2.13.0
HOST ?= 127.0.0.1
PORT ?= 8000
# test processes (pytest-xdist; whole test files go to one process): 2 on the 2-core CI
# machine, where browsers, servers and workers wait on each other half the time; 0 = one
TEST_WORKERS ?= 2

.PHONY: run test setup setup-dev lint format migrate worker clean-data help

help:
	@echo "make run    - install (first time) and serve http://$(HOST):$(PORT) on SQLite + embedded worker"
	@echo "make test   - install (first time, with dev tools) and run the whole test suite"
	@echo "make lint   - ruff check + format check + mypy (strict for app/ and trainer/)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.torch: | $(BIN)/python
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q "$(TORCH_SPEC)"
	@touch $@

$(VENV)/.installed: pyproject.toml $(VENV)/.torch
	$(BIN)/pip install -q -e .
	@touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

setup: $(VENV)/.installed
setup-dev: $(VENV)/.installed-dev

run: setup
	$(BIN)/prefloop serve --host $(HOST) --port $(PORT)

worker: setup
	$(BIN)/prefloop worker --queues cpu,gpu

migrate: setup
	$(BIN)/prefloop db upgrade

test: setup-dev
	$(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

lint: setup-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check app trainer tests benchmarks
	$(BIN)/mypy

format: setup-dev
	$(BIN)/ruff format app trainer tests benchmarks
	$(BIN)/ruff check --fix .

clean-data:
	rm -rf var
