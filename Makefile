# dreamdiffusion — `make help` lists the targets.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.install-stamp
RUN_DIR ?= runs/demo
export MNE_DATA ?= $(CURDIR)/data/mne
export MPLBACKEND ?= Agg

.DEFAULT_GOAL := help
.PHONY: help install test test-fast demo demo-eval data-moabb clean

help:  ## List the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)  ## Create .venv/ and install the package with its dev extra (skipped when current)

test: install  ## Run the whole test suite (slow tests included)
	$(BIN)/python -m pytest

test-fast: install  ## Run the tests not marked slow
	$(BIN)/python -m pytest -m "not slow"

demo: install  ## Run the embedded default on CPU, all three stages (tiny models, synthetic data), print the metrics
	mkdir -p $(MNE_DATA)
	$(BIN)/dreamdiffusion weights tiny --out $(RUN_DIR)/weights
	$(BIN)/dreamdiffusion data synth-imagenet-eeg --out $(RUN_DIR)/data
	$(BIN)/dreamdiffusion fit -c configs/demo/pretrain.yaml --run_dir=$(RUN_DIR)
	$(BIN)/dreamdiffusion fit -c configs/demo/finetune.yaml --run_dir=$(RUN_DIR)
	$(BIN)/dreamdiffusion test -c configs/demo/eval.yaml --run_dir=$(RUN_DIR)
	@cat $(RUN_DIR)/eval/metrics.md
	@echo "encoder: $(RUN_DIR)/pretrain, pipeline: $(RUN_DIR)/finetune/pipeline, evaluation: $(RUN_DIR)/eval; logs: tensorboard --logdir $(RUN_DIR)"

demo-eval: install  ## Stage 3 on the demo run: score $(RUN_DIR)/finetune/pipeline, print metrics.md
	$(BIN)/dreamdiffusion test -c configs/demo/eval.yaml --run_dir=$(RUN_DIR)
	@cat $(RUN_DIR)/eval/metrics.md

data-moabb: install  ## Download the pinned MOABB list into MNE_DATA (internet; ACCEPT=1 accepts dataset licences)
	mkdir -p $(MNE_DATA)
	$(BIN)/dreamdiffusion data moabb-download --datasets configs/data/moabb_paper.yaml $(if $(ACCEPT),--accept-licences)

clean:  ## Remove runs/ (the venv stays)
	rm -rf runs
