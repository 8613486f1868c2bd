# The two commands of the README: `make run` and `make test`. Each creates .venv from
# the pinned requirements when it is missing (or when the pins changed).

PYTHON ?= python3
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
STAMP := $(VENV)/.installed
CORES ?= all
SNAKEMAKE_ARGS ?=
export PATH := $(BIN):$(PATH)
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: run test lint format dryrun report clean-results help

help:
	@echo "make run    - run the pipeline on the embedded data set and print Table 1"
	@echo "make test   - run the test suite"
	@echo "make lint   - ruff, snakefmt --check and snakemake --lint"

$(STAMP): requirements.txt requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "Python 3.10 or newer is needed")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -r requirements.txt -c requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/snakemake --cores $(CORES) $(SNAKEMAKE_ARGS)
	@cat results/$$($(BIN)/python -c "import yaml; print(yaml.safe_load(open('config.yaml'))['dataset']['name'])")/table1.md

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/snakefmt --check Snakefile workflow/rules
	$(BIN)/snakemake --lint

dryrun: $(STAMP)
	$(BIN)/snakemake -n --cores $(CORES)

report: $(STAMP)
	$(BIN)/snakemake --cores $(CORES) --report report.html
