# dreamdiffusion — `make help` lists the targets.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.install-stamp
RUN_DIR ?= runs/demo
export MNE_DATA ?= $(CURDIR)/data/mne
export MPLBACKEND ?= Agg

.DEFAULT_GOAL := help
.PHONY: help install lint test test-fast docs docs-check demo demo-seeds demo-eval demo-things data-moabb data-check data-check-things weights reproduce reproduce-things table2 eval-authors clean

help:  ## List the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)  ## Create .venv/ and install the package with its dev extra (skipped when current)

lint: install  ## Check the code with ruff (rules in pyproject.toml)
	$(BIN)/ruff check .

test: install lint  ## Lint, then run the whole test suite (slow tests included)
	$(BIN)/python -m pytest

test-fast: install lint  ## Lint, then run the tests not marked slow
	$(BIN)/python -m pytest -m "not slow"

docs: install  ## Regenerate the config reference tables in docs/ from the code
	$(BIN)/python scripts/config_reference.py

docs-check: install  ## Fail when a config reference table in docs/ is stale
	$(BIN)/python scripts/config_reference.py --check

# make demo: a miniature of the paper's world, every part synthetic (docs/demo-world.md). Stage 0 (`weights demo`)
# trains the base model that draws and the classifier that knows the pictures, on pictures of their own (never
# the dataset's); the synthetic EEG's signal-to-noise makes the class readable, not trivial.
DEMO_DATA ?= --subjects 6 --snr 2.5
# stage 3 on an ablation's pipeline (<run_dir>/finetune_<row>/pipeline) into <run_dir>/eval_<row>
demo_eval = --model.init_args.pipeline=$(RUN_DIR)/finetune_$(1)/pipeline --trainer.default_root_dir=$(RUN_DIR)/eval_$(1)
demo_rows = full=$(RUN_DIR)/eval no_pretrain=$(RUN_DIR)/eval_no_pretrain no_clip=$(RUN_DIR)/eval_no_clip

$(RUN_DIR)/weights/demo_weights.json:
	$(BIN)/dreamdiffusion weights demo --out $(RUN_DIR)/weights

$(RUN_DIR)/data/synthetic.json:
	$(BIN)/dreamdiffusion data synth-imagenet-eeg --out $(RUN_DIR)/data $(DEMO_DATA)

demo: install  ## Embedded default on CPU: stage 0, then stages 1-3 for full / no_pretrain / no_clip (same budget); table + summary.png
	mkdir -p $(MNE_DATA)
	$(MAKE) --no-print-directory $(RUN_DIR)/weights/demo_weights.json $(RUN_DIR)/data/synthetic.json
	$(BIN)/dreamdiffusion fit -c configs/demo/pretrain.yaml --run_dir=$(RUN_DIR)
	$(BIN)/dreamdiffusion fit -c configs/demo/finetune.yaml --run_dir=$(RUN_DIR)
	$(BIN)/dreamdiffusion test -c configs/demo/eval.yaml --run_dir=$(RUN_DIR)
	$(BIN)/dreamdiffusion fit -c configs/demo/finetune.yaml -c configs/ablations/finetune_no_pretrain.yaml --run_dir=$(RUN_DIR)
	$(BIN)/dreamdiffusion test -c configs/demo/eval.yaml --run_dir=$(RUN_DIR) $(call demo_eval,no_pretrain)
	$(BIN)/dreamdiffusion fit -c configs/demo/finetune.yaml -c configs/ablations/finetune_no_clip.yaml --run_dir=$(RUN_DIR)
	$(BIN)/dreamdiffusion test -c configs/demo/eval.yaml --run_dir=$(RUN_DIR) $(call demo_eval,no_clip)
	@echo
	@echo "Synthetic test split; the demo's trained base model and classifier (LPIPS: random AlexNet); CPU; the same budget per row:"
	@$(BIN)/python scripts/collect_metrics.py $(demo_rows)
	@$(BIN)/python scripts/summary_figure.py $(demo_rows) --columns full,no_clip --out $(RUN_DIR)/summary.png
	@echo
	@echo "summary picture: $(RUN_DIR)/summary.png (one test trial per class: ground truth | full | no_clip | shuffled-EEG control)"
	@echo "images: $(RUN_DIR)/eval*/samples/grid_class*.png; the base model's own caption samples: $(RUN_DIR)/weights/caption_samples.png"
	@echo "TensorBoard logs: tensorboard --logdir $(RUN_DIR)   (pretrain/ and finetune*/lightning_logs)"
	@echo "encoder: $(RUN_DIR)/pretrain; pipelines: $(RUN_DIR)/finetune*/pipeline; full reports: $(RUN_DIR)/eval*/metrics.md"

# make demo-seeds: full and no_pretrain over SEEDS (stages 1-3 seeded; the same weights, data and corpus cache),
# then the paired difference with a 95% interval (scripts/compare_runs.py).
SEEDS ?= 0 1 2
seed_dir = $(RUN_DIR)/seeds/seed$(1)
seed_args = --run_dir=$(call seed_dir,$(1)) --seed_everything=$(1)
demo-seeds: install  ## full vs no_pretrain over SEEDS="0 1 2" in $(RUN_DIR)/seeds/ (after or without make demo); prints the paired differences
	mkdir -p $(MNE_DATA)
	$(MAKE) --no-print-directory $(RUN_DIR)/weights/demo_weights.json $(RUN_DIR)/data/synthetic.json
	for s in $(SEEDS); do \
		d=$(RUN_DIR)/seeds/seed$$s; mkdir -p $$d; ln -sfn $(abspath $(RUN_DIR))/weights $$d/weights; ln -sfn $(abspath $(RUN_DIR))/data $$d/data; \
		$(BIN)/dreamdiffusion fit -c configs/demo/pretrain.yaml --run_dir=$$d --seed_everything=$$s --data.init_args.cache_dir=$(RUN_DIR)/moabb_cache || exit 1; \
		$(BIN)/dreamdiffusion fit -c configs/demo/finetune.yaml --run_dir=$$d --seed_everything=$$s || exit 1; \
		$(BIN)/dreamdiffusion test -c configs/demo/eval.yaml --run_dir=$$d --seed_everything=$$s || exit 1; \
		$(BIN)/dreamdiffusion fit -c configs/demo/finetune.yaml -c configs/ablations/finetune_no_pretrain.yaml --run_dir=$$d --seed_everything=$$s || exit 1; \
		$(BIN)/dreamdiffusion test -c configs/demo/eval.yaml --run_dir=$$d --seed_everything=$$s \
			--model.init_args.pipeline=$$d/finetune_no_pretrain/pipeline --trainer.default_root_dir=$$d/eval_no_pretrain || exit 1; \
	done
	$(BIN)/python scripts/compare_runs.py --names full no_pretrain --a $(foreach s,$(SEEDS),$(RUN_DIR)/seeds/seed$(s)/eval) \
		--b $(foreach s,$(SEEDS),$(RUN_DIR)/seeds/seed$(s)/eval_no_pretrain) | tee $(RUN_DIR)/seeds/pretraining.md

demo-eval: install  ## Stage 3 on the demo run: score $(RUN_DIR)/finetune/pipeline, print metrics.md
	$(BIN)/dreamdiffusion test -c configs/demo/eval.yaml --run_dir=$(RUN_DIR)
	@cat $(RUN_DIR)/eval/metrics.md

data-moabb: install  ## Download the pinned MOABB list into MNE_DATA (internet; ACCEPT=1 accepts dataset licences)
	mkdir -p $(MNE_DATA)
	$(BIN)/dreamdiffusion data moabb-download --datasets configs/data/moabb_paper.yaml $(if $(ACCEPT),--accept-licences)

# ---- the paper, on a cluster (README: "Reproducing the paper") ----------------------------------
RUN ?= runs/paper
IMAGENET_EEG ?= data/imagenet_eeg
# WEIGHTS=weights reads the models that `make weights` downloaded, offline; empty: hub ids (internet).
WEIGHTS ?=
# TRAINER="--trainer configs/trainer/ddp.yaml" (or the slurm preset inside an allocation).
TRAINER ?=
SD_LOCAL = $(if $(WEIGHTS),--model.init_args.sd_model=$(WEIGHTS)/stable-diffusion-v1-5 \
	--model.init_args.clip_model=$(WEIGHTS)/clip-vit-large-patch14 --model.init_args.local_files_only=true \
	--data.init_args.sd_model=$(WEIGHTS)/stable-diffusion-v1-5 --data.init_args.clip_model=$(WEIGHTS)/clip-vit-large-patch14 \
	--data.init_args.local_files_only=true)
EVAL_LOCAL = $(if $(WEIGHTS),--model.init_args.clip_model=$(WEIGHTS)/clip-vit-large-patch14 --model.init_args.local_files_only=true \
	--data.init_args.clip_model=$(WEIGHTS)/clip-vit-large-patch14 --data.init_args.local_files_only=true \
	--model.init_args.classifier.weights_path=$(WEIGHTS)/eval/vit_h_14_swag-80465313.pth \
	--model.init_args.inception.weights_path=$(WEIGHTS)/eval/weights-inception-2015-12-05-6726825d.pth \
	--model.init_args.lpips.weights_path=$(WEIGHTS)/eval/alexnet-owt-7be5be79.pth)
TABLE2_PRETRAIN := mask0.25 mask0.5 mask0.85 458M 162M 74M 18.3M
TABLE2_ROWS := no_pretrain_no_clip no_pretrain_no_clip_18.3M no_pretrain no_pretrain_18.3M mask0.25 mask0.5 mask0.85 \
	458M 162M 74M 18.3M e_only no_clip a_only

weights: install  ## Download SD-1.5, CLIP ViT-L/14 and the evaluation networks into weights/ (needs internet)
	$(BIN)/dreamdiffusion weights fetch --out weights
	$(BIN)/dreamdiffusion weights fetch-eval --out weights/eval

data-check: install  ## Check the ImageNet-EEG files and images of a paper run (IMAGENET_EEG=data/imagenet_eeg)
	$(BIN)/dreamdiffusion data check-imagenet-eeg --eeg $(IMAGENET_EEG)/eeg_5_95_std.pth \
		--splits $(IMAGENET_EEG)/block_splits_by_image_single.pth --images $(IMAGENET_EEG)/images --subject 4

reproduce: install  ## The paper's three stages in RUN=runs/paper (WEIGHTS=weights: local models; TRAINER=...)
	$(BIN)/dreamdiffusion fit -c configs/pretrain.yaml --run_dir=$(RUN) $(TRAINER)
	$(BIN)/dreamdiffusion fit -c configs/finetune.yaml --run_dir=$(RUN) $(TRAINER) $(SD_LOCAL)
	$(BIN)/dreamdiffusion test -c configs/eval.yaml --run_dir=$(RUN) $(TRAINER) $(EVAL_LOCAL)
	@cat $(RUN)/eval/metrics.md

table2: reproduce  ## Every Table 2 row (stage-1 variants, stage-2 ablations, stage 3 each), then one table
	for v in $(TABLE2_PRETRAIN); do \
		$(BIN)/dreamdiffusion fit -c configs/pretrain.yaml -c configs/ablations/pretrain_$$v.yaml --run_dir=$(RUN) $(TRAINER) || exit 1; \
	done
	for r in $(TABLE2_ROWS); do \
		$(BIN)/dreamdiffusion fit -c configs/finetune.yaml -c configs/ablations/finetune_$$r.yaml --run_dir=$(RUN) $(TRAINER) $(SD_LOCAL) || exit 1; \
		$(BIN)/dreamdiffusion test -c configs/eval.yaml --run_dir=$(RUN) $(TRAINER) $(EVAL_LOCAL) \
			--model.init_args.pipeline=$(RUN)/finetune_$$r/pipeline --trainer.default_root_dir=$(RUN)/eval_$$r || exit 1; \
	done
	$(BIN)/python scripts/collect_metrics.py --paper-table2 full=$(RUN)/eval $(foreach r,$(TABLE2_ROWS),$(r)=$(RUN)/eval_$(r)) \
		| tee $(RUN)/table2.md

AUTHORS_RUN ?= runs/authors
eval-authors: install  ## Import the authors' checkpoint (CKPT=checkpoint.pth [SD_CONFIG=config15.yaml]) and score it: PLMS-250, DDIM-50
	$(if $(CKPT),,$(error give CKPT=path/to/checkpoint.pth (the authors' pretrains/models/checkpoint.pth)))
	$(BIN)/dreamdiffusion weights import-authors --checkpoint $(CKPT) --out $(AUTHORS_RUN)/pipeline --overwrite \
		$(if $(SD_CONFIG),--sd-config $(SD_CONFIG))
	$(BIN)/dreamdiffusion test -c configs/eval_authors.yaml --run_dir=$(AUTHORS_RUN) $(TRAINER) $(EVAL_LOCAL)
	$(BIN)/dreamdiffusion test -c configs/eval_authors.yaml --run_dir=$(AUTHORS_RUN) $(TRAINER) $(EVAL_LOCAL) \
		--model.init_args.sampler=ddim --model.init_args.num_inference_steps=50 --trainer.default_root_dir=$(AUTHORS_RUN)/eval_ddim50
	$(BIN)/python scripts/collect_metrics.py plms250=$(AUTHORS_RUN)/eval_plms250 ddim50=$(AUTHORS_RUN)/eval_ddim50 \
		| tee $(AUTHORS_RUN)/metrics.md

# ---- THINGS-EEG2 (docs/data-things-eeg2.md) -------------------------------------------------------
THINGS_EEG2 ?= data/things_eeg2
THINGS_RUN ?= runs/things-sub08
# THINGS_OVERLAY="-c configs/things/cross_subject.yaml": leave sub-08 out (train on the nine others).
THINGS_OVERLAY ?=
THINGS_DATA = --data.init_args.root=$(THINGS_EEG2)
# WEIGHTS=weights: local models (`make weights` plus `dreamdiffusion weights fetch-suite --out weights/eval`).
THINGS_SD_LOCAL = $(if $(WEIGHTS),--model.init_args.sd_model=$(WEIGHTS)/stable-diffusion-v1-5 \
	--model.init_args.clip_model=$(WEIGHTS)/clip-vit-large-patch14 --model.init_args.local_files_only=true \
	--data.init_args.clip_model=$(WEIGHTS)/clip-vit-large-patch14 --data.init_args.local_files_only=true)
THINGS_EVAL_LOCAL = $(if $(WEIGHTS),$(EVAL_LOCAL) \
	--model.init_args.alexnet_2.weights_path=$(WEIGHTS)/eval/alexnet-owt-7be5be79.pth \
	--model.init_args.alexnet_5.weights_path=$(WEIGHTS)/eval/alexnet-owt-7be5be79.pth \
	--model.init_args.inception_v3.weights_path=$(WEIGHTS)/eval/inception_v3_google-0cc3c7bd.pth \
	--model.init_args.efficientnet_b1.weights_path=$(WEIGHTS)/eval/efficientnet_b1_rwightman-bac287d4.pth \
	--model.init_args.swav.weights_path=$(WEIGHTS)/eval/swav_800ep_pretrain.pth.tar)
DEMO_THINGS_RUN ?= runs/demo-things

data-check-things: install  ## Check the THINGS-EEG2 files and pictures (THINGS_EEG2=data/things_eeg2); prints what is missing
	$(BIN)/dreamdiffusion data check-things-eeg2 --root $(THINGS_EEG2)

reproduce-things: install  ## THINGS-EEG2, leak-free: stages 1-3 on sub-08 in THINGS_RUN (THINGS_OVERLAY, WEIGHTS, TRAINER)
	$(BIN)/dreamdiffusion fit -c configs/things/pretrain.yaml $(THINGS_OVERLAY) --run_dir=$(THINGS_RUN) $(THINGS_DATA) $(TRAINER)
	$(BIN)/dreamdiffusion fit -c configs/things/finetune.yaml $(THINGS_OVERLAY) --run_dir=$(THINGS_RUN) $(THINGS_DATA) $(TRAINER) $(THINGS_SD_LOCAL)
	$(BIN)/dreamdiffusion test -c configs/things/eval.yaml $(THINGS_OVERLAY) --run_dir=$(THINGS_RUN) $(THINGS_DATA) $(TRAINER) $(THINGS_EVAL_LOCAL)
	@cat $(THINGS_RUN)/eval/metrics.md

demo-things: install  ## The three stages on a tiny synthetic THINGS-EEG2 twin, CPU (the loading and scoring code, not a result)
	mkdir -p $(MNE_DATA)
	$(BIN)/dreamdiffusion weights tiny --out $(DEMO_THINGS_RUN)/weights $(DEMO_WEIGHTS)
	$(BIN)/dreamdiffusion data synth-things-eeg2 --out $(DEMO_THINGS_RUN)/data --subjects 1 8 --train-concepts 20 \
		--images-per-concept 3 --test-concepts 10
	$(BIN)/dreamdiffusion fit -c configs/things/demo/pretrain.yaml --run_dir=$(DEMO_THINGS_RUN)
	$(BIN)/dreamdiffusion fit -c configs/things/demo/finetune.yaml --run_dir=$(DEMO_THINGS_RUN)
	$(BIN)/dreamdiffusion test -c configs/things/demo/eval.yaml --run_dir=$(DEMO_THINGS_RUN)
	@cat $(DEMO_THINGS_RUN)/eval/metrics.md

clean:  ## Remove runs/ (the venv stays)
	rm -rf runs
