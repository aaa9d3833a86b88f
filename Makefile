# dreamdiffusion — `make help` lists the targets.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.install-stamp
RUN_DIR ?= runs/demo
export MNE_DATA ?= $(CURDIR)/data/mne
export MPLBACKEND ?= Agg

.DEFAULT_GOAL := help
.PHONY: help install lint test test-fast docs docs-check demo demo-runs demo-seeds demo-seed-runs demo-eval demo-things data-moabb data-check data-check-things preprocess-things weights reproduce reproduce-things table2 eval-authors clean

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

docs: install  ## Regenerate the config reference tables and the command list in docs/ from the code
	$(BIN)/python scripts/config_reference.py

docs-check: install  ## Fail when a config reference table or the command list in docs/ is stale
	$(BIN)/python scripts/config_reference.py --check

# make demo: a miniature of the paper's world, every part synthetic (docs/demo-world.md). Stage 0 (`weights demo`)
# trains the base model that draws and the classifier that knows the pictures, on pictures of their own (never
# the dataset's); the synthetic EEG's signal-to-noise makes the class readable, not trivial.
# The steps are file targets run DEMO_JOBS at a time, each on DEMO_THREADS threads: stage 0 beside stage 1, the
# no_pretrain row beside stage 1, and so on. Each step's output goes to <run_dir>/logs/<step>.log; the terminal
# shows one line per start and end, and <run_dir>/timings.tsv the wall seconds. A finished step is not re-run
# (delete its output, or the run folder, to run it again); a config edited since re-runs what depends on it.
# Stage 2 starts over whenever it runs (about a minute): it re-runs when stage 1's encoder or stage 0's models
# are newer, and resuming would be refused (a checkpoint records the SHA-256 of the encoder it started from).
# Stage 1 resumes (its input is its config).
DEMO_DATA ?= --subjects 6 --snr 2.5
DEMO_JOBS ?= 2
DEMO_THREADS ?= 1
step = OMP_NUM_THREADS=$(DEMO_THREADS) scripts/run_step.sh $(1) $(RUN_DIR)/logs/$(1).log $(RUN_DIR)/timings.tsv --
demo_rows = full=$(RUN_DIR)/eval no_pretrain=$(RUN_DIR)/eval_no_pretrain no_clip=$(RUN_DIR)/eval_no_clip
# A row's folders in run folder $(1): stage 2 in finetune[_<row>]/, stage 3 in eval[_<row>]/; its ablation overlay
# configs/ablations/finetune_<row>.yaml (the full model has none); stage 1's encoder unless the row has none.
row_suffix = $(if $(filter full,$(2)),,_$(2))
row_overlay = $(if $(filter full,$(1)),,-c configs/ablations/finetune_$(1).yaml)
row_encoder = $(if $(filter no_pretrain,$(2)),,$(1)/pretrain/encoder.safetensors)

# stage 0 in three steps (`weights demo --part ...`): the base model, the CLIP + classifier (on the core stage 1
# frees while the base model still trains), then the checks of both (off the path of the rows)
demo_part = $(RUN_DIR)/weights/parts/$(1).json
demo_models = $(call demo_part,base-model) $(call demo_part,clip-eval)
$(call demo_part,base-model):
	@$(call step,stage0_base_model) $(BIN)/dreamdiffusion weights demo --out $(RUN_DIR)/weights --part base-model

$(call demo_part,clip-eval):
	@$(call step,stage0_clip_eval) $(BIN)/dreamdiffusion weights demo --out $(RUN_DIR)/weights --part clip-eval

$(RUN_DIR)/weights/demo_weights.json: $(demo_models)
	@$(call step,stage0_checks) $(BIN)/dreamdiffusion weights demo --out $(RUN_DIR)/weights --part checks

$(RUN_DIR)/data/synthetic.json:
	@$(call step,data) $(BIN)/dreamdiffusion data synth-imagenet-eeg --out $(RUN_DIR)/data $(DEMO_DATA)

# stage 1 in run folder $(1), step names prefixed $(2), extra arguments $(3), extra prerequisites $(4)
define demo_pretrain
$(1)/pretrain/encoder.safetensors: configs/demo/pretrain.yaml $(4)
	@mkdir -p $(MNE_DATA)
	@$$(call step,$(2)stage1_pretrain) $(BIN)/dreamdiffusion fit -c configs/demo/pretrain.yaml --run_dir=$(1) $(3)
endef
# stages 2 and 3 of row $(2) in run folder $(1), step names prefixed $(3), extra arguments $(4), extra prerequisites $(5)
define demo_row
$(1)/finetune$(call row_suffix,$(1),$(2))/export.json: configs/demo/finetune.yaml $(demo_models) $(RUN_DIR)/data/synthetic.json $(call row_encoder,$(1),$(2)) $(5)
	@$$(call step,$(3)stage2_$(2)) $(BIN)/dreamdiffusion fit -c configs/demo/finetune.yaml $(call row_overlay,$(2)) --run_dir=$(1) $(4) \
		--resume=false

$(1)/eval$(call row_suffix,$(1),$(2))/metrics.json: configs/demo/eval.yaml $(1)/finetune$(call row_suffix,$(1),$(2))/export.json
	@$$(call step,$(3)stage3_$(2)) $(BIN)/dreamdiffusion test -c configs/demo/eval.yaml --run_dir=$(1) $(4) \
		--model.init_args.pipeline=$(1)/finetune$(call row_suffix,$(1),$(2))/pipeline --trainer.default_root_dir=$(1)/eval$(call row_suffix,$(1),$(2))
endef
$(eval $(call demo_pretrain,$(RUN_DIR),,))
$(foreach row,full no_pretrain no_clip,$(eval $(call demo_row,$(RUN_DIR),$(row),,)))

# stage 1 and stage 0's base model (the two longest steps) first; when stage 1 ends, the paired data (seconds) and
# the CLIP + classifier on its core; the rows when the base model is done, stage 0's checks last
demo-runs: $(RUN_DIR)/pretrain/encoder.safetensors $(call demo_part,base-model) $(RUN_DIR)/data/synthetic.json $(call demo_part,clip-eval) $(RUN_DIR)/eval/metrics.json $(RUN_DIR)/eval_no_pretrain/metrics.json $(RUN_DIR)/eval_no_clip/metrics.json $(RUN_DIR)/weights/demo_weights.json

demo: install  ## Embedded default on CPU: stage 0, then stages 1-3 for full / no_pretrain / no_clip (same budget); table + summary.png
	$(MAKE) --no-print-directory -j$(DEMO_JOBS) demo-runs
	@echo
	@echo "Synthetic test split; the demo's trained base model and classifier (LPIPS: random AlexNet); CPU; the same budget per row:"
	@$(BIN)/python scripts/collect_metrics.py $(demo_rows)
	@$(BIN)/python scripts/summary_figure.py $(demo_rows) --columns full,no_clip --out $(RUN_DIR)/summary.png
	@echo
	@echo "summary picture: $(RUN_DIR)/summary.png (one test trial per class: ground truth | full | no_clip | shuffled-EEG control)"
	@echo "images: $(RUN_DIR)/eval*/samples/grid_class*.png; the base model's own caption samples: $(RUN_DIR)/weights/caption_samples.png"
	@echo "logs of every step: $(RUN_DIR)/logs/; wall seconds: $(RUN_DIR)/timings.tsv"
	@echo "TensorBoard logs: tensorboard --logdir $(RUN_DIR)   (pretrain/ and finetune*/lightning_logs)"
	@echo "encoder: $(RUN_DIR)/pretrain; pipelines: $(RUN_DIR)/finetune*/pipeline; full reports: $(RUN_DIR)/eval*/metrics.md"

# make demo-seeds: full and no_pretrain over SEEDS, then the paired difference with a 95% interval
# (scripts/compare_runs.py). Seed 0 is `make demo`'s own run; every other seed runs stages 1-3 seeded in
# <run_dir>/seeds/seed<N>/ on the same stage-0 models, paired data and stage-1 corpus cache (built once, by seed 0).
SEEDS ?= 0 1 2
seed_dir = $(if $(filter 0,$(1)),$(RUN_DIR),$(RUN_DIR)/seeds/seed$(1))
# a seed's folder reads the models and the paired data of seed 0 through links
seed_links = $(call seed_dir,$(1))/weights/demo_weights.json
define demo_seed_links
$(call seed_links,$(1)): $(RUN_DIR)/weights/demo_weights.json $(RUN_DIR)/data/synthetic.json
	@mkdir -p $(call seed_dir,$(1))
	@ln -sfn $(abspath $(RUN_DIR))/weights $(call seed_dir,$(1))/weights
	@ln -sfn $(abspath $(RUN_DIR))/data $(call seed_dir,$(1))/data
endef
$(foreach s,$(filter-out 0,$(SEEDS)),$(eval $(call demo_seed_links,$(s))))
$(foreach s,$(filter-out 0,$(SEEDS)),$(eval $(call demo_pretrain,$(call seed_dir,$(s)),seed$(s)_,--seed_everything=$(s) \
	--data.init_args.cache_dir=$(RUN_DIR)/moabb_cache,$(RUN_DIR)/pretrain/encoder.safetensors $(call seed_links,$(s)))))
$(foreach s,$(filter-out 0,$(SEEDS)),$(foreach row,full no_pretrain,$(eval $(call demo_row,$(call seed_dir,$(s)),$(row),seed$(s)_,\
	--seed_everything=$(s),$(call seed_links,$(s))))))
seed_evals = $(foreach s,$(SEEDS),$(call seed_dir,$(s))/eval/metrics.json $(call seed_dir,$(s))/eval_no_pretrain/metrics.json)

demo-seed-runs: $(seed_evals)

demo-seeds: install  ## full vs no_pretrain over SEEDS="0 1 2" (seed 0: make demo's run; others in $(RUN_DIR)/seeds/); paired differences
	$(MAKE) --no-print-directory -j$(DEMO_JOBS) demo-seed-runs
	$(BIN)/python scripts/compare_runs.py --names full no_pretrain --a $(foreach s,$(SEEDS),$(call seed_dir,$(s))/eval) \
		--b $(foreach s,$(SEEDS),$(call seed_dir,$(s))/eval_no_pretrain) | tee $(RUN_DIR)/pretraining.md

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
# THINGS_EEG_DIR=preprocessed_from_raw: the files `make preprocess-things` writes (whitening fit on training EEG only).
THINGS_EEG_DIR ?= preprocessed_data
THINGS_DATA = --data.init_args.root=$(THINGS_EEG2) --data.init_args.eeg_dir=$(THINGS_EEG_DIR)
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

preprocess-things: install  ## Preprocess the raw THINGS-EEG2 recordings, whitening fit on training EEG only (THINGS_EEG2/raw_data -> preprocessed_from_raw)
	$(BIN)/dreamdiffusion data preprocess-things-eeg2 --root $(THINGS_EEG2)

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
