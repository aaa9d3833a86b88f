"""The paper targets name configs that exist, and `make table2` covers every Table 2 overlay."""

import re
import shutil
import subprocess

import pytest

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def dry_run(repo, target: str, *variables: str) -> str:
    done = subprocess.run(["make", "-n", target, *variables], cwd=repo, capture_output=True, text=True, check=True)
    return done.stdout


def test_table2_runs_every_ablation_overlay_that_exists(repo):
    commands = dry_run(repo, "table2", "RUN=/tmp/run", "WEIGHTS=weights")
    named = set(re.findall(r"configs/[\w/.-]+\.yaml", commands))
    assert named and all((repo / path).is_file() for path in named), sorted(p for p in named if not (repo / p).is_file())
    # stage-1 and stage-2 overlays are named through shell loops: expand the loop lists
    pretrain = re.search(r"for v in ([^;]+);", commands).group(1).split()
    rows = re.search(r"for r in ([^;]+);", commands).group(1).split()
    overlays = {p.stem for p in (repo / "configs/ablations").glob("*.yaml")}
    assert {f"pretrain_{v}" for v in pretrain} == {o for o in overlays if o.startswith("pretrain_")}
    # Fig. 5's "CLIP only" is not a Table 2 row
    assert {f"finetune_{r}" for r in rows} == {o for o in overlays if o.startswith("finetune_")} - {"finetune_clip_only"}
    assert "scripts/collect_metrics.py --paper-table2" in commands


def test_reproduce_reads_local_weights_when_asked(repo):
    local = dry_run(repo, "reproduce", "WEIGHTS=/models")
    assert "--model.init_args.sd_model=/models/stable-diffusion-v1-5" in local
    assert "--model.init_args.classifier.weights_path=/models/eval/vit_h_14_swag-80465313.pth" in local
    assert "sd_model" not in dry_run(repo, "reproduce")


def test_eval_authors_imports_then_scores_plms250_and_ddim50(repo):
    commands = dry_run(repo, "eval-authors", "CKPT=/dl/checkpoint.pth", "SD_CONFIG=/dl/config15.yaml", "WEIGHTS=/models")
    assert "weights import-authors --checkpoint /dl/checkpoint.pth --out runs/authors/pipeline" in commands
    assert "--sd-config /dl/config15.yaml" in commands
    tests = [line for line in commands.splitlines() if "test -c configs/eval_authors.yaml" in line]
    assert len(tests) == 2 and (repo / "configs/eval_authors.yaml").is_file()
    assert "--model.init_args.sampler=ddim --model.init_args.num_inference_steps=50" in commands
    assert "--model.init_args.inception.weights_path=/models/eval/" in commands
    failed = subprocess.run(["make", "-n", "eval-authors"], cwd=repo, capture_output=True, text=True)
    assert failed.returncode != 0 and "give CKPT=" in failed.stderr


def test_reproduce_things_names_configs_that_exist_and_reads_local_suite_weights(repo):
    commands = dry_run(repo, "reproduce-things", "WEIGHTS=/models", "THINGS_OVERLAY=-c configs/things/cross_subject.yaml")
    named = set(re.findall(r"configs/[\w/.-]+\.yaml", commands))
    assert {"configs/things/pretrain.yaml", "configs/things/finetune.yaml", "configs/things/eval.yaml",
            "configs/things/cross_subject.yaml"} <= named and all((repo / p).is_file() for p in named)
    assert "--model.init_args.swav.weights_path=/models/eval/swav_800ep_pretrain.pth.tar" in commands
    assert "--data.init_args.sd_model" not in commands  # the THINGS data module has no VAE cache
    assert "dreamdiffusion data check-things-eeg2 --root data/things_eeg2" in dry_run(repo, "data-check-things")


def test_test_target_lints_before_it_runs_the_suite(repo):
    commands = dry_run(repo, "test").splitlines()
    lint = next(i for i, c in enumerate(commands) if c.endswith("ruff check ."))
    suite = next(i for i, c in enumerate(commands) if "-m pytest" in c)
    assert lint < suite
