# Two commands do everything on a fresh machine with Python >= 3.11.5 and make:
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
# Test processes (pytest-xdist): one per core; each test file runs in one process (--dist loadfile keeps a
# file's fixtures shared). PYTEST_JOBS=0 runs everything in this process.
PYTEST_JOBS ?= $(shell nproc 2>/dev/null || echo 2)
REPORT_ARGS ?=

.PHONY: help setup git-filter reproduce quick test lab data synthetic bench clean lock report

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

# The lock needs Python >= 3.11.5 (contourpy 1.3.3 has no 3.10 build, soupsieve needs 3.11.5); pyproject's
# requires-python, the README and tests/test_environment.py say the same.
MIN_PYTHON := 3.11.5

$(STAMP): requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < tuple(map(int, "$(MIN_PYTHON)".split("."))))' || \
	    { echo "error: $(PYTHON) is Python $$($(PYTHON) -c 'import platform; print(platform.python_version())');" \
	    "the kit needs Python >= $(MIN_PYTHON) (e.g. make PYTHON=python3.12 ...)" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name cloud-scalability-kit \
	    --display-name "Python (cloud-scalability-kit)" >/dev/null
	@$(MAKE) --no-print-directory git-filter
	@touch $@

setup: $(STAMP) git-filter ## create .venv from requirements.lock, register the Jupyter kernel and the notebook git filter

# Notebooks stay clean in git: nbstripout (pinned in the lock) is the clean filter and diff driver that
# .gitattributes names for *.ipynb (outputs, execution counts and the interpreter's patch version never reach
# git; the filter runs $(BIN)/python from the top of each checkout), and the kit's Jupyter server strips the
# same before saving a notebook under notebooks/, so running one in JupyterLab leaves `git status` clean.
git-filter: ## register nbstripout as git's notebook filter and the JupyterLab save hook (part of setup)
	@$(BIN)/python -c 'from analysis.provenance import install_jupyter_save_hook as f; f("$(VENV)")'
	@if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then \
	    $(BIN)/python -c 'from analysis.provenance import install_notebook_filter as f; f("$(BIN)/python")' && \
	    echo "notebooks: committed through nbstripout ($(BIN)/python -m nbstripout), saved stripped by JupyterLab"; \
	else echo "notebooks: not a git checkout, git filter skipped (JupyterLab save hook installed)"; fi

reproduce: $(STAMP) ## fetch/verify data, run every notebook (JOBS at once), publish figures/ (ARGS="--only 05 -p seed 7": outputs under build/runs/)
	$(BIN)/python -m analysis data --best-effort
	$(BIN)/python -m analysis reproduce $(if $(JOBS),--jobs $(JOBS)) $(ARGS)

quick: $(STAMP) ## every notebook in quick mode (outputs under build/quick, committed figures untouched)
	$(BIN)/python -m analysis reproduce --quick $(if $(JOBS),--jobs $(JOBS)) $(ARGS)

test: $(STAMP) ## run the whole test-suite (theory, simulation, data, notebooks in quick mode)
	$(BIN)/python -m pytest $(if $(filter-out 0,$(PYTEST_JOBS)),-n $(PYTEST_JOBS) --dist loadfile) $(PYTEST_ARGS)

lab: $(STAMP) ## open JupyterLab on notebooks/ with the kit's kernel
	$(BIN)/jupyter lab --notebook-dir=notebooks

data: $(STAMP) ## download the real datasets into data/external and verify their sha256
	$(BIN)/python -m analysis data

synthetic: $(STAMP) ## regenerate the embedded synthetic default under data/synthetic
	$(BIN)/python -m analysis synthetic

bench: $(STAMP) ## run the performance benchmarks (prints tables)
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

# The static site of the last canonical run (make reproduce first); REPORT_ARGS="--build-dir build/quick" for the
# quick run. Missing executed notebooks: a one-line error naming them and the command that makes them.
report: $(STAMP) ## build the static HTML site build/site/ (home, a page per notebook, figure gallery) from the last run
	@$(BIN)/python -m analysis report $(REPORT_ARGS)

lock: $(STAMP) ## rewrite requirements.lock from the current .venv
	{ echo '# Exact versions installed by `make` into .venv (Python 3.11, Linux). Regenerate with `make lock`.'; \
	  $(BIN)/python -m pip freeze --exclude-editable | grep -v '^-e'; } > requirements.lock.tmp && mv requirements.lock.tmp requirements.lock

clean: ## remove build products (keeps .venv, figures/ and data/)
	rm -rf build .pytest_cache
	find . -name __pycache__ -prune -exec rm -rf {} +
