# `make run` and `make test` do all the set-up a newcomer needs: the virtual
# environment, the install, then the job.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is installed first and pinned: on this project's CI machines torch 2.13.0
# is a local CPU build, while a plain `torch` would resolve to a multi-gigabyte
# CUDA build. Override for your machine, e.g. `make run TORCH="torch==2.5.1"`.
TORCH ?= torch==2.13.0

.PHONY: setup setup-run run test lint clean mutate test-template test-numerics

# What running needs (`make run`): gymkit and its dependencies, no extra.
setup-run: $(VENV)/.runtime

$(VENV)/.runtime: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e .
	touch $@

# What the tests need besides (`make test`): the dev extra.
setup: $(VENV)/.installed

$(VENV)/.installed: $(VENV)/.runtime
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

run: setup-run
	$(BIN)/gymkit run agent frozenlake

lint: setup
	$(BIN)/ruff check toolkit agents generative envs tests benchmarks examples
	$(BIN)/mypy
	$(BIN)/mypy examples/plugin-template/src examples/plugin-template/tests

test: lint
	$(BIN)/python -m pytest
	$(MAKE) test-numerics
	$(MAKE) test-template

# The numerics of the one fast path (tests/test_numerics.py) again under other kernel
# dispatches, so that a CPU unlike this one is simulated on it: MKL's AVX2 code, and ATen's
# (and inductor's) AVX2 and scalar kernels.
DISPATCHES := MKL_ENABLE_INSTRUCTIONS=AVX2 ATEN_CPU_CAPABILITY=avx2 ATEN_CPU_CAPABILITY=default

test-numerics: setup
	for dispatch in $(DISPATCHES); do \
		echo "tests/test_numerics.py with $$dispatch"; \
		env $$dispatch $(BIN)/python -m pytest -q -p no:cacheprovider tests/test_numerics.py \
			|| exit 1; \
	done

# The example plugin package, installed as a user would (into a folder of its own, so that
# the venv stays clean), tested with its own tests and run through the CLI.
TEMPLATE_SITE := build/plugin-template-site
WITH_TEMPLATE := PYTHONPATH=$(CURDIR)/$(TEMPLATE_SITE)

test-template: setup
	rm -rf $(TEMPLATE_SITE) build/template-runs
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation \
		--target $(TEMPLATE_SITE) examples/plugin-template
	$(WITH_TEMPLATE) $(BIN)/python -m pytest -q -p no:cacheprovider examples/plugin-template
	$(WITH_TEMPLATE) $(BIN)/gymkit list > build/template-list.txt
	for name in template-sarsa template-mixture template-blobs template-chain; do \
		grep -q "$$name" build/template-list.txt || { echo "gymkit list lacks $$name"; exit 1; }; \
	done
	$(WITH_TEMPLATE) $(BIN)/gymkit run agent template-chain --steps 3000 -q \
		--runs-dir build/template-runs
	$(WITH_TEMPLATE) $(BIN)/gymkit run generative template-mixture --dataset template-blobs \
		--epochs 2 -q --runs-dir build/template-runs

# Mutation testing of runner, checkpoint, config and qlearning (see [tool.mutmut] in
# pyproject.toml and docs/testing.md). Slow (about three hours for all ~1,700 mutants on two
# cores), so not part of `make test`. mutmut keeps its results in mutants/ and re-tests only
# functions that changed; `rm -rf mutants` starts afresh. MUTANTS picks some by name, globs
# allowed: `make mutate MUTANTS='toolkit.checkpoint.*'`. `$(BIN)/mutmut show NAME` prints one.
MUTMUT_CHILDREN ?= 2
MUTANTS ?=

mutate: setup
	$(BIN)/mutmut run --max-children $(MUTMUT_CHILDREN) $(MUTANTS)
	$(BIN)/mutmut results

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
