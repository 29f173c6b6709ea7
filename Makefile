# Two commands do everything on a fresh machine with Python >= 3.10 and make:
#   make reproduce   set up .venv, fetch/verify data, execute every notebook, publish the figures of those that succeeded
#   make test        set up .venv and run the whole test-suite
.DEFAULT_GOAL := reproduce
SHELL := /bin/bash

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.kit-installed
# Real data: an explicit KIT_DATA_DIR wins; otherwise a sibling shared/data copy when present;
# otherwise data/external (make data) or the embedded synthetic default (analysis.paths.data_root).
KIT_DATA_DIR ?= $(if $(wildcard ../shared/data),$(abspath ../shared/data),)
export KIT_DATA_DIR
# One BLAS thread per process: statsmodels fits are small, and on 2 shared cores extra BLAS threads
# only contend with the simulation processes (measured 2-10x slower backtests).
export OPENBLAS_NUM_THREADS ?= 1
export OMP_NUM_THREADS ?= 1
export MKL_NUM_THREADS ?= 1
ARGS   ?=
# Notebooks run at once by `reproduce`/`quick` (empty: one per CPU core).
JOBS   ?=
PYTEST_ARGS ?=

.PHONY: help setup reproduce quick test lab data synthetic bench clean lock report

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name cloud-scalability-kit \
	    --display-name "Python (cloud-scalability-kit)" >/dev/null
	@touch $@

setup: $(STAMP) ## create .venv from requirements.lock and register the Jupyter kernel

reproduce: $(STAMP) ## fetch/verify data, run every notebook (JOBS at once), publish figures/ (ARGS="--only 05 -p seed 7": outputs under build/runs/)
	$(BIN)/python -m analysis data --best-effort
	$(BIN)/python -m analysis reproduce $(if $(JOBS),--jobs $(JOBS)) $(ARGS)

quick: $(STAMP) ## every notebook in quick mode (outputs under build/quick, committed figures untouched)
	$(BIN)/python -m analysis reproduce --quick $(if $(JOBS),--jobs $(JOBS)) $(ARGS)

test: $(STAMP) ## run the whole test-suite (theory, simulation, data, notebooks in quick mode)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lab: $(STAMP) ## open JupyterLab on notebooks/ with the kit's kernel
	$(BIN)/jupyter lab --notebook-dir=notebooks

data: $(STAMP) ## download the real datasets into data/external and verify their sha256
	$(BIN)/python -m analysis data

synthetic: $(STAMP) ## regenerate the embedded synthetic default under data/synthetic
	$(BIN)/python -m analysis synthetic

bench: $(STAMP) ## run the performance benchmarks (prints tables)
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

lock: $(STAMP) ## rewrite requirements.lock from the current .venv
	{ echo '# Exact versions installed by `make` into .venv (Python 3.11, Linux). Regenerate with `make lock`.'; \
	  $(BIN)/python -m pip freeze --exclude-editable | grep -v '^-e'; } > requirements.lock.tmp && mv requirements.lock.tmp requirements.lock

clean: ## remove build products (keeps .venv, figures/ and data/)
	rm -rf build .pytest_cache
	find . -name __pycache__ -prune -exec rm -rf {} +
