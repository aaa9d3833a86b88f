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


def demo_steps(repo, target: str, run_dir, *variables: str) -> dict[str, str]:
    """``{step name: command}`` of the steps `make -n <target>` would run (each through scripts/run_step.sh)."""
    commands = dry_run(repo, target, f"RUN_DIR={run_dir}", "BIN=.venv/bin", *variables)
    steps = {}
    for line in commands.splitlines():
        match = re.search(r"scripts/run_step\.sh (\S+) (\S+) (\S+) -- (.*)$", line)
        if match:
            name, log, timings, command = match.groups()
            assert log == f"{run_dir}/logs/{name}.log" and timings == f"{run_dir}/timings.tsv"
            steps[name] = command
    return steps


def test_demo_runs_every_stage_once_per_row_with_its_overlay(repo, tmp_path):
    steps = demo_steps(repo, "demo-runs", tmp_path)
    assert set(steps) == {"stage0_base_model", "stage0_clip_eval", "stage0_checks", "data", "stage1_pretrain", "stage2_full",
                          "stage2_no_pretrain", "stage2_no_clip", "stage3_full", "stage3_no_pretrain", "stage3_no_clip"}
    # the two longest steps first; then the paired data and stage 0's small models; stage 0's checks after the rows
    assert list(steps)[:4] == ["stage1_pretrain", "stage0_base_model", "data", "stage0_clip_eval"]
    assert list(steps)[-1] == "stage0_checks"
    for part in ("base-model", "clip-eval", "checks"):
        assert steps[f"stage0_{part.replace('-', '_')}"].endswith(f"weights demo --out {tmp_path}/weights --part {part}")
    assert "-c configs/ablations/finetune_no_pretrain.yaml" in steps["stage2_no_pretrain"]
    assert "-c configs/ablations/finetune_no_clip.yaml" in steps["stage2_no_clip"]
    assert "ablations" not in steps["stage2_full"]
    # stage 2 re-runs when stage 1's encoder is newer: it must not continue a run made from the old encoder
    assert all(steps[f"stage2_{row}"].endswith("--resume=false") for row in ("full", "no_pretrain", "no_clip"))
    assert f"--model.init_args.pipeline={tmp_path}/finetune_no_clip/pipeline" in steps["stage3_no_clip"]
    assert f"--trainer.default_root_dir={tmp_path}/eval_no_clip" in steps["stage3_no_clip"]
    assert f"--trainer.default_root_dir={tmp_path}/eval " in steps["stage3_full"] + " "
    named = set(re.findall(r"configs/[\w/.-]+\.yaml", " ".join(steps.values())))
    assert named and all((repo / p).is_file() for p in named)


def test_demo_skips_steps_whose_output_exists(repo, tmp_path):
    (tmp_path / "weights" / "parts").mkdir(parents=True)
    for part in ("base-model", "clip-eval"):
        (tmp_path / "weights" / "parts" / f"{part}.json").write_text("{}")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "synthetic.json").write_text("{}")
    steps = demo_steps(repo, "demo-runs", tmp_path)
    assert not {"stage0_base_model", "stage0_clip_eval", "data"} & set(steps)
    assert "stage1_pretrain" in steps and "stage0_checks" in steps  # the checks have not run yet
    (tmp_path / "weights" / "demo_weights.json").write_text("{}")
    assert "stage0_checks" not in demo_steps(repo, "demo-runs", tmp_path)


def test_demo_seeds_adds_seeded_runs_that_share_the_corpus_cache_and_models(repo, tmp_path):
    steps = demo_steps(repo, "demo-seed-runs", tmp_path, "SEEDS=0 1 2")
    for seed in (1, 2):
        folder = f"{tmp_path}/seeds/seed{seed}"
        pretrain = steps[f"seed{seed}_stage1_pretrain"]
        assert f"--run_dir={folder}" in pretrain and f"--seed_everything={seed}" in pretrain
        assert f"--data.init_args.cache_dir={tmp_path}/moabb_cache" in pretrain
        assert {f"seed{seed}_stage2_full", f"seed{seed}_stage2_no_pretrain", f"seed{seed}_stage3_full",
                f"seed{seed}_stage3_no_pretrain"} <= set(steps)
        assert f"seed{seed}_stage2_no_clip" not in steps
    # seed 0 is make demo's own run
    assert "stage1_pretrain" in steps and not any(name.startswith("seed0") for name in steps)
    commands = dry_run(repo, "demo-seed-runs", f"RUN_DIR={tmp_path}", "SEEDS=0 1")
    assert f"ln -sfn {tmp_path}/weights {tmp_path}/seeds/seed1/weights" in commands


def run_step(repo, tmp_path, *command: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(repo / "scripts/run_step.sh"), "demo_step", str(tmp_path / "logs/demo_step.log"),
                           str(tmp_path / "timings.tsv"), "--", *command], capture_output=True, text=True)


def test_run_step_logs_output_and_records_the_time(repo, tmp_path):
    done = run_step(repo, tmp_path, "sh", "-c", "echo hello from the step")
    assert done.returncode == 0
    assert "demo_step: started" in done.stdout and "demo_step: done in" in done.stdout
    assert "hello from the step" not in done.stdout
    assert (tmp_path / "logs/demo_step.log").read_text() == "hello from the step\n"
    name, seconds, status = (tmp_path / "timings.tsv").read_text().strip().split("\t")
    assert name == "demo_step" and int(seconds) >= 0 and status == "ok"


def test_run_step_failure_keeps_the_exit_status_and_prints_the_end_of_the_log(repo, tmp_path):
    done = run_step(repo, tmp_path, "sh", "-c", "for i in $(seq 1 50); do echo line $i; done; exit 3")
    assert done.returncode == 3
    assert "demo_step: FAILED (exit 3)" in done.stderr and "line 50" in done.stderr and "line 10\n" not in done.stderr
    assert (tmp_path / "timings.tsv").read_text().strip().endswith("failed (exit 3)")


def test_run_step_refuses_a_command_line_without_its_separator(repo, tmp_path):
    done = subprocess.run([str(repo / "scripts/run_step.sh"), "name", "log", "timings", "echo"], capture_output=True, text=True)
    assert done.returncode == 2 and "usage:" in done.stderr
