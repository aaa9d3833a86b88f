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

# make demo: the tiny CLIP is warmed up on synthetic pictures of the demo's 10 classes (never the dataset's);
# the synthetic EEG's signal-to-noise makes the class readable, not trivial.
DEMO_WEIGHTS ?= --clip-warmup-classes 10
DEMO_DATA ?= --subjects 6 --snr 1.5
# stage 3 on an ablation's pipeline (<run_dir>/finetune_<row>/pipeline) into <run_dir>/eval_<row>
demo_eval = --model.init_args.pipeline=$(RUN_DIR)/finetune_$(1)/pipeline --trainer.default_root_dir=$(RUN_DIR)/eval_$(1)
demo: install  ## Embedded default on CPU: tiny models, synthetic pairs, 3 stages + 2 ablations (same budget); prints the table
	mkdir -p $(MNE_DATA)
	$(BIN)/dreamdiffusion weights tiny --out $(RUN_DIR)/weights $(DEMO_WEIGHTS)
	$(BIN)/dreamdiffusion data synth-imagenet-eeg --out $(RUN_DIR)/data $(DEMO_DATA)
	$(BIN)/dreamdiffusion fit -c configs/demo/pretrain.yaml --run_dir=$(RUN_DIR)
	$(BIN)/dreamdiffusion fit -c configs/demo/finetune.yaml --run_dir=$(RUN_DIR)
	$(BIN)/dreamdiffusion test -c configs/demo/eval.yaml --run_dir=$(RUN_DIR)
	$(BIN)/dreamdiffusion fit -c configs/demo/finetune.yaml -c configs/ablations/finetune_no_pretrain.yaml --run_dir=$(RUN_DIR)
	$(BIN)/dreamdiffusion test -c configs/demo/eval.yaml --run_dir=$(RUN_DIR) $(call demo_eval,no_pretrain)
	$(BIN)/dreamdiffusion fit -c configs/demo/finetune.yaml -c configs/ablations/finetune_no_clip.yaml --run_dir=$(RUN_DIR)
	$(BIN)/dreamdiffusion test -c configs/demo/eval.yaml --run_dir=$(RUN_DIR) $(call demo_eval,no_clip)
	@echo
	@echo "Synthetic test split, tiny random models (CLIP warmed up on pictures of its own), CPU, the same budget per row:"
	@$(BIN)/python scripts/collect_metrics.py full=$(RUN_DIR)/eval no_pretrain=$(RUN_DIR)/eval_no_pretrain no_clip=$(RUN_DIR)/eval_no_clip
	@echo
	@echo "images: $(RUN_DIR)/eval/samples/grid_class*.png (rows: trials; ground truth | samples), likewise eval_no_pretrain/ and eval_no_clip/"
	@echo "TensorBoard logs: tensorboard --logdir $(RUN_DIR)   (pretrain/ and finetune*/lightning_logs)"
	@echo "encoder: $(RUN_DIR)/pretrain; pipelines: $(RUN_DIR)/finetune*/pipeline; full reports: $(RUN_DIR)/eval*/metrics.md"

demo-eval: install  ## Stage 3 on the demo run: score $(RUN_DIR)/finetune/pipeline, print metrics.md
	$(BIN)/dreamdiffusion test -c configs/demo/eval.yaml --run_dir=$(RUN_DIR)
	@cat $(RUN_DIR)/eval/metrics.md

data-moabb: install  ## Download the pinned MOABB list into MNE_DATA (internet; ACCEPT=1 accepts dataset licences)
	mkdir -p $(MNE_DATA)
	$(BIN)/dreamdiffusion data moabb-download --datasets configs/data/moabb_paper.yaml $(if $(ACCEPT),--accept-licences)

clean:  ## Remove runs/ (the venv stays)
	rm -rf runs
