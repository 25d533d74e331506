# `make run` replicates on config/config.yaml; `make test` runs the unit tests and a smoke run.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= config/config.yaml
CORES ?= all
# The run a config writes (its `run:` key) under results/: findings and report read it.
RUN ?= $(shell sed -n 's/^run: *//p' $(CONFIG))
FEATURES ?= classifier
FASHION_DIR := /usr/share/datasets/fashion-mnist

.PHONY: run run-sdg testbed testbed-p0 training-free approximations test test-slow test-reliability test-slurm bench-gpu data venv bench bench-metrics clean-results findings report mutate mutate-wiring budget

venv: $(STAMP)

# Idempotent: rebuilt only when the pins change. pip byte-compiles at install, and must: where
# PYTHONDONTWRITEBYTECODE is set (as on CI's machine) nothing is cached later, and every job would
# compile torch from source again (pytest took 12:41 instead of 7 minutes with --no-compile).
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

# Fashion-MNIST from Debian's package when we can install it (root with apt); otherwise the
# pipeline tries config's dataset.source_dir and torchvision's download, and says what failed.
data:
	@if [ ! -d $(FASHION_DIR) ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian package dataset-fashion-mnist"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; \
	fi

# check_config first: for a config file that is not valid YAML, Snakemake says only "not valid
# JSON or YAML"; check_config names the line (and checks every key, as the Snakefile does).
run: venv data
	$(BIN)/python -m diffguide.pipeline.check_config $(CONFIG)
	$(BIN)/snakemake --cores $(CORES) --configfile $(CONFIG)
	@$(BIN)/python -m diffguide.pipeline.summary $(CONFIG)

# Similarity guidance (issue 14) added to the default run's results/default/: config/sdg.yaml merged
# over $(CONFIG); the default run's models, samples and metrics are reused, not redone.
SDG_CONFIG ?= config/sdg.yaml
run-sdg: venv data
	$(BIN)/python -m diffguide.pipeline.check_config $(CONFIG) $(SDG_CONFIG)
	$(BIN)/snakemake --cores $(CORES) --configfile $(CONFIG) $(SDG_CONFIG)
	@$(BIN)/python -m diffguide.pipeline.summary $(CONFIG)

# The guidance testbed (issue 16): config/testbed.yaml merged over $(CONFIG), its own run
# (results/testbed/) on the default run's trained models (so `make run` first: models_from), every
# method since 2022 swept beside CFG, the 2-D toy figure, then the testbed's findings (a claim
# that does not hold is a result, not a failed command: only exit code 2, no metrics, fails).
TESTBED_CONFIG ?= config/testbed.yaml
TESTBED_RUN = $(shell sed -n 's/^run: *//p' $(TESTBED_CONFIG))
testbed: venv data
	$(BIN)/python -m diffguide.pipeline.check_config $(CONFIG) $(TESTBED_CONFIG)
	$(BIN)/snakemake testbed --cores $(CORES) --configfile $(CONFIG) $(TESTBED_CONFIG)
	$(BIN)/python -m diffguide.findings results/$(TESTBED_RUN)/metrics.csv --set testbed || [ $$? -eq 1 ]

# ICG, TSG and CFG on a conditional model trained without label dropout (issue 29: icg_p0, tsg_p0,
# cfg_p0), added to the testbed's run (so `make testbed` first): config/testbed_p0.yaml merged over
# the testbed's config; its samples and metrics are reused, and the tables gain the three rows.
TESTBED_P0_CONFIG ?= config/testbed_p0.yaml
testbed-p0: venv data
	$(BIN)/python -m diffguide.pipeline.check_config $(CONFIG) $(TESTBED_CONFIG) $(TESTBED_P0_CONFIG)
	$(BIN)/snakemake testbed --cores $(CORES) --configfile $(CONFIG) $(TESTBED_CONFIG) $(TESTBED_P0_CONFIG)
	$(BIN)/python -m diffguide.findings results/$(TESTBED_RUN)/metrics.csv --set testbed || [ $$? -eq 1 ]

# Training-free guidance (issue 28): config/training_free.yaml merged over $(CONFIG), its own run
# (results/training_free/) on the default run's models (so `make run` first), DPS, FreeDoM, MPGD, UGD
# and TFG by a clean guide classifier, and classifier guidance's second-order (Laplace) rule, against
# classifier guidance by the noisy one, compared at matched accuracy, then findings 20-22 (a claim that does not hold is a result: only exit 2 fails).
TRAINING_FREE_CONFIG ?= config/training_free.yaml
TRAINING_FREE_RUN = $(shell sed -n 's/^run: *//p' $(TRAINING_FREE_CONFIG))
training-free: venv data
	$(BIN)/python -m diffguide.pipeline.check_config $(CONFIG) $(TRAINING_FREE_CONFIG)
	$(BIN)/snakemake training_free --cores $(CORES) --configfile $(CONFIG) $(TRAINING_FREE_CONFIG)
	$(BIN)/python -m diffguide.findings results/$(TRAINING_FREE_RUN)/metrics.csv --set training_free || [ $$? -eq 1 ]

# How far is each guidance rule from the exact guided step? The one-step study of issue 28 on the
# exact Gaussian mixtures (no data, no trained model): rows to results/approximations/, the figures
# and tables the README shows to docs/ (docs/approximations.md). 5 min 40 s on 2 cores (AMD EPYC, AVX-512
# BF16, nothing else running).
approximations: venv
	$(BIN)/python -m diffguide.reports.approximation_report --out results/approximations --docs docs

# Do the papers' findings hold on results/$(RUN)/metrics.csv? Exit 0: all hold, 1: one fails,
# 2: no metrics yet. FEATURES=inception judges FID and IS on Inception features instead.
# Findings 1-8 are first written as a Markdown table, results/$(RUN)/replication_status.md (both
# feature families; a finding that fails is a result there, so only its exit code 2 stops the target):
# the target's result is the findings command's.
FINDINGS ?= papers
findings: venv
	$(BIN)/python -m diffguide.reports.replication_status results/$(RUN)/metrics.csv --out results/$(RUN)/replication_status.md || [ $$? -eq 1 ]
	$(BIN)/python -m diffguide.findings results/$(RUN)/metrics.csv --features $(FEATURES) --set $(FINDINGS)

# results/$(RUN)/report.html: every figure and table with its caption (workflow/report/*.rst).
report: venv
	$(BIN)/snakemake --configfile $(CONFIG) --report results/$(RUN)/report.html

# `data` too: the tests read the real Fashion-MNIST test split from Debian's package. On one
# pytest-xdist worker per core (at most 8; the tests that read the smoke run share one worker,
# tests/conftest.py): 2 workers on a 2-core machine. TEST_WORKERS=0 runs the suite in one process.
TEST_WORKERS ?= auto
test: venv data
	$(BIN)/python -m pytest --numprocesses $(TEST_WORKERS) --maxprocesses 8

# The tests marked slow: Inception-v3 features and FID on the real splits, two-rank DDP training
# and divergence (gloo), and the training rule
# under torchrun, a plugin method, similarity guidance (config/smoke_sdg.yaml) and the guidance
# testbed (config/smoke_testbed.yaml) through the smoke run, a forced rerun of its evaluations,
# `diffguide sample` against a sampling job, the documented commands from a wheel install, and a
# few more cases of tests in make test (about 18 minutes on a 2-core AVX2 CPU). CI runs them
# after `make test`.
test-slow: venv data
	$(BIN)/python -m pytest -m slow

# Bad configs, damaged artifacts and kill -9 in each stage, replayed on whole Snakemake runs of
# a reduced smoke config (tests/test_reliability.py; several minutes), and the config fuzzer's long
# budget (tests/test_config_fuzz.py: thousands of drawn configs through the checks, dozens through
# snakemake -n). CI runs it after make test.
test-reliability: venv
	$(BIN)/python -m pytest -m reliability tests/test_reliability.py tests/test_config_fuzz.py

# The smoke run through the SLURM profile on a one-node cluster started on this machine
# (tests/slurm/cluster.sh: installs slurm-wlm and munge with apt when missing, so root), checked
# against the cluster's records and a local run (12.5 minutes on a 2-core AVX2 CPU). The sbatch
# lines and `scontrol show job` records are kept in results/slurm_test_record.txt. CI runs it.
test-slurm: venv data
	mkdir -p results
	DIFFGUIDE_SLURM_RECORD=$(CURDIR)/results/slurm_test_record.txt $(BIN)/python -m pytest -m slurm tests/test_slurm.py

# Training and sampling speed of $(CONFIG)'s networks beside this machine's matmul peak, fp32 and
# bf16, as Markdown (not part of `make test`; about 4 minutes). BENCH_ARGS=--quick: a short check;
# BENCH_ARGS="--threads 1,2" repeats every table per thread count. See benchmarks/README.md.
BENCH_ARGS ?=
bench: venv
	$(BIN)/python benchmarks/performance.py --config $(CONFIG) $(BENCH_ARGS)

# On a CUDA machine, everything issue 15 asks a GPU to measure in about 8 minutes (speeds, peak
# memory, NCCL DDP step, a short end-to-end run of config/gpu.yaml's networks and the full run's
# projected time), written to results/gpu_check_report.md. See benchmarks/README.md.
bench-gpu: venv data
	BIN=$(BIN) benchmarks/gpu_check.sh

# Seconds per 1,000 images of each feature network of the evaluation (not part of `make test`).
bench-metrics: venv data
	$(BIN)/python benchmarks/feature_speed.py --threads 1
	$(BIN)/python benchmarks/feature_speed.py --threads 2

# Core-seconds per stage (training, sampling, evaluation, Inception reference) of results/$(RUN)'s
# jobs, from the benchmark files Snakemake writes there, as Markdown. BUDGET_ARGS="--wall-seconds N"
# adds the run's core utilisation over N seconds of wall time.
BUDGET_ARGS ?=
budget: venv
	$(BIN)/python benchmarks/budget_table.py results/$(RUN) $(BUDGET_ARGS)

# Mutation testing (issue 13): mutmut 3 plants one-line bugs in the modules listed under
# [tool.mutmut] in pyproject.toml (schedules, samplers, guidance, losses, metrics, precision/recall,
# findings, registry) and runs on each the fast tests that call the mutated function. Prints the
# mutants no test killed and the kill ratio. Not part of `make test`: about 1 s per mutant on 2
# cores. MUTANTS="diffguide.diffusion.schedules.*" runs a subset; each run starts from a fresh ./mutants.
# Then the wiring operators mutmut lacks (issue 26): tools/wiring_mutants.py, also alone as
# `make mutate-wiring` (about 12 minutes on 2 cores; WIRING_ARGS="--only apg" for one module).
MUTANTS ?=
MUTATE_CHILDREN ?= 2
mutate: venv
	rm -rf mutants
	$(BIN)/mutmut run --max-children $(MUTATE_CHILDREN) $(foreach m,$(MUTANTS),'$(m)')
	@echo "Mutants not killed (mutmut show <name> prints the change):"
	@$(BIN)/mutmut results
	@$(BIN)/mutmut export-cicd-stats >/dev/null
	@$(BIN)/python -c 'import json; s = json.load(open("mutants/mutmut-cicd-stats.json")); \
		c = s["killed"] + s["timeout"]; t = c + s["survived"] + s["no_tests"] + s["suspicious"] + s["segfault"]; \
		print("killed %d of %d mutants (%.1f%%): %d survived, %d reached by no test, %d suspicious" \
		      % (c, t, 100 * c / max(t, 1), s["survived"], s["no_tests"], s["suspicious"]))'
	$(MAKE) mutate-wiring

WIRING_ARGS ?=
mutate-wiring: venv
	$(BIN)/python tools/wiring_mutants.py $(WIRING_ARGS)

clean-results:
	rm -rf results/*/
