# The two commands of the README: `make run` and `make test`. Each creates .venv from
# the pinned requirements when it is missing (or when the pins changed).

PYTHON ?= python3
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
STAMP := $(VENV)/.installed
CORES ?= all
SNAKEMAKE_ARGS ?=
TARGETS ?=
export PATH := $(BIN):$(PATH)
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: run quick table all efficiency figure2-seeds readme test lint format dryrun report clean-results help

help:
	@echo "make run    - the 2021 report on the embedded data set: all of Table 1, systems"
	@echo "              (a)-(d), comparisons, Figure 3, the ONNX int8 check (28 min measured, 2 cores)"
	@echo "make quick  - Table 1 rows 0 and 3 only (a few minutes)"
	@echo "make efficiency - the DCASE 2024 data-efficiency study (Rep-Mobile, ~5 min)"
	@echo "make all    - both, and Figure 2 over three seeds (Snakemake's default target)"
	@echo "make figure2-seeds - Figure 2, seed 0 and over three training seeds"
	@echo "make readme - regenerate the README's results from results/ (after make run)"
	@echo "make pull / make push - results through the DVC remote (docs/reproduce.md)"
	@echo "make test   - run the test suite"
	@echo "make lint   - ruff, snakefmt --check and snakemake --lint"

$(STAMP): requirements.txt requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "Python 3.10 or newer is needed")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -r requirements.txt -c requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

DATASET = $$($(BIN)/python -c "import yaml; print(yaml.safe_load(open('config.yaml'))['dataset']['name'])")

# The 2021 report on the embedded data set (Snakemake target `paper`): every Table 1 row,
# the systems (a)-(d), the comparisons, Figure 3, the per-device comparison, the probe
# and the ONNX int8 check; prints Table 1 and the wall time (Figure 2: figure2-seeds). TARGETS="..." builds other targets instead.
run: $(STAMP)
	@jobs=$$($(call PENDING_JOBS,$(or $(TARGETS),paper))); start=$$(date +%s); \
	$(BIN)/snakemake --cores $(CORES) $(SNAKEMAKE_ARGS) $(or $(TARGETS),paper) && \
	if [ -z "$(TARGETS)" ]; then cat results/$(DATASET)/table1.md; \
		$(call RECORD_TIME,make run,paper,$$start,$$jobs); fi && \
	echo "make run: $$(( ($$(date +%s) - start + 30) / 60 )) min of wall time"

# Jobs a target would run now (`snakemake -n`), and the wall time of a run of them, kept
# in results/<dataset>/timings.json for the README (make readme). A run that found
# nothing to do records nothing.
PENDING_JOBS = $(BIN)/snakemake -n --cores $(CORES) $(SNAKEMAKE_ARGS) $(1) 2>/dev/null \
	| awk '$$1 == "total" {n = $$2} END {print n + 0}'
RECORD_TIME = [ "$(4)" -eq 0 ] || $(BIN)/python -c 'import json, os, sys, time; \
	p = sys.argv[3]; d = json.load(open(p)) if os.path.exists(p) else {}; \
	d["$(2)"] = {"command": "$(1)", "seconds": int(time.time()) - int(sys.argv[1]), \
	"cores": os.cpu_count(), "note": sys.argv[2] + " jobs, after set-up"}; \
	json.dump(d, open(p, "w"), indent=1, sort_keys=True)' $(3) $(4) "results/$(DATASET)/timings.json"

# The README's results section, regenerated from results/<dataset>/ (copied to
# docs/results/ first, so the README and its sources are committed together).
readme: $(STAMP)
	$(BIN)/acoustic-lottery readme --results results/$(DATASET)

# The whole table under its older name.
table: run

# Everything: the 2021 report and the 2024 study (Snakemake's default target).
all: $(STAMP)
	$(BIN)/snakemake --cores $(CORES) $(SNAKEMAKE_ARGS)

# Figure 2 over three training seeds alone (also part of make all); after make run it
# trains only the seeds 1 and 2, and its recorded time is theirs.
figure2-seeds: $(STAMP)
	@jobs=$$($(call PENDING_JOBS,figure2_seeded)); start=$$(date +%s); \
	$(BIN)/snakemake --cores $(CORES) $(SNAKEMAKE_ARGS) figure2_seeded && \
	$(call RECORD_TIME,make figure2-seeds,figure2_seeds,$$start,$$jobs)

# The quick tour: Table 1 rows 0 (DCASE 2021 baseline) and 3 (SIC), a few minutes.
quick: $(STAMP)
	@ds=results/$(DATASET); \
	$(BIN)/snakemake --cores $(CORES) $(SNAKEMAKE_ARGS) $$ds/table1/row0.json $$ds/table1/row3.json && \
	$(BIN)/acoustic-lottery table --rows $$(ls $$ds/table1/row*.json $$ds/table1/system*.json 2>/dev/null) \
		--out-md $$ds/table1.partial.md --out-csv $$ds/table1.partial.csv >/dev/null && \
	cat $$ds/table1.partial.md

# The DCASE 2024 data-efficiency study alone (Rep-Mobile on nested train subsets).
efficiency: $(STAMP)
	@jobs=$$($(call PENDING_JOBS,data_efficiency)); start=$$(date +%s); \
	$(BIN)/snakemake --cores $(CORES) $(SNAKEMAKE_ARGS) data_efficiency && \
	$(call RECORD_TIME,make efficiency,efficiency,$$start,$$jobs)
	@cat results/$(DATASET)/efficiency.md

# One pytest worker per core (pytest-xdist), a whole test file per worker at a time
# (module fixtures are built once); TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= auto
test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/snakefmt --check Snakefile workflow/rules
	$(BIN)/snakemake --lint

dryrun: $(STAMP)
	$(BIN)/snakemake -n --cores $(CORES)

report: $(STAMP)
	$(BIN)/snakemake --cores $(CORES) --report report.html paper

# DVC storage (docs/reproduce.md). DVC restores file contents but not modification
# times, and a fresh clone has no Snakemake metadata: after `dvc pull`, touching every
# job's outputs in DAG order (snakemake --touch --forceall runs no command and deletes
# nothing) makes each output newer than its inputs again and records Snakemake's
# provenance for them, so `snakemake -n` has nothing to do and later edits of code or
# config still trigger reruns. Touching is only right when the pulled outputs belong to
# this workspace's code and config, so PULL_GUARD first checks that `dvc status` reports
# no changed code, config or raw input (outputs of stages are not checked here: a
# partial pull leaves some missing, and Snakemake rebuilds those).
# DVC_ARGS: e.g. -r <remote>, -j <jobs>, or the outputs to pull.
DVC_ARGS ?=
.PHONY: pull push

define PULL_GUARD
import os, sys
from dvc.repo import Repo

with Repo() as repo:
    raw = {s.addressing for s in repo.index.stages if s.is_data_source}  # `dvc add`ed
    made = [
        os.path.relpath(o.fs_path, repo.root_dir)
        for s in repo.index.stages
        if not s.is_data_source
        for o in s.outs
    ]
    status = repo.status()

def produced(path):
    return any(path == m or path.startswith(m + "/") or m.startswith(path + "/") for m in made)

changed = []
for stage, entries in status.items():
    for entry in entries:
        if entry == "changed command":
            changed.append(f"{stage}: command")
        elif isinstance(entry, dict):
            deps = entry.get("changed deps", {})
            changed += [f"{stage}: {d}" for d in deps if not produced(d)]
            if stage in raw:
                outs = entry.get("changed outs", {})
                changed += [f"{stage}: {o}" for o, st in outs.items() if st == "modified"]
if changed:
    sys.exit(
        "make pull: code or config differ from dvc.lock (" + "; ".join(changed) + "), "
        "so the pulled outputs are not theirs and are left untouched. Commit or stash "
        "the change and run make pull again, or run dvc repro to rebuild."
    )
endef
export PULL_GUARD

pull: $(STAMP)
	$(BIN)/dvc pull $(DVC_ARGS)
	$(BIN)/python -c "$$PULL_GUARD"
	$(BIN)/snakemake --touch --forceall --cores 1 --quiet all

push: $(STAMP)
	$(BIN)/dvc push $(DVC_ARGS)
