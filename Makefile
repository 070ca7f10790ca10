# `make run` and `make test` do all the set-up a newcomer needs: the virtual
# environment, the install, then the job.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is installed first and pinned: on this project's CI machines torch 2.13.0
# is a local CPU build, while a plain `torch` would resolve to a multi-gigabyte
# CUDA build. Override for your machine, e.g. `make run TORCH="torch==2.5.1"`.
TORCH ?= torch==2.13.0

.PHONY: setup run test lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

run: setup
	$(BIN)/gymkit run agent frozenlake

lint: setup
	$(BIN)/ruff check toolkit agents generative envs tests benchmarks
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
