"""Resume continues only a checkpoint of the same settings (a larger budget may differ); bad files are one line."""

import pytest
import torch

from dreamdiffusion.resume_check import (
    CHECKPOINT_KEY,
    ResumeRefused,
    check_resume,
    last_checkpoint,
    resolve_ckpt_path,
    stage_settings,
)


def config(run_dir="/runs/a", mask_ratio=0.75, preset="tiny", max_epochs=5, num_workers=2):
    return {
        "run_dir": run_dir,
        "seed_everything": 0,
        "trainer": {"max_epochs": max_epochs, "max_steps": -1, "precision": "32-true", "default_root_dir": f"{run_dir}/pretrain",
                    "enable_progress_bar": True},
        "model": {"class_path": "dreamdiffusion.stages.pretrain.MSMPretrainModule",
                  "init_args": {"preset": preset, "mask_ratio": mask_ratio, "betas": (0.9, 0.95)}},
        "data": {"class_path": "dreamdiffusion.data.moabb.MOABBDataModule",
                 "init_args": {"cache_dir": f"{run_dir}/moabb_cache", "num_workers": num_workers}},
    }


def checkpoint(tmp_path, **kwargs):
    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "global_step": 4, CHECKPOINT_KEY: stage_settings(config(**kwargs))}, path)
    return path


def test_the_same_settings_resume(tmp_path):
    assert check_resume(checkpoint(tmp_path), stage_settings(config())).startswith("resuming from")


def test_a_changed_mask_ratio_or_preset_is_refused_with_the_keys_and_the_ways_out(tmp_path):
    last = checkpoint(tmp_path)
    with pytest.raises(ResumeRefused) as info:
        check_resume(last, stage_settings(config(mask_ratio=0.5, preset="18.3M")))
    message = str(info.value)
    assert "model.init_args.mask_ratio: 0.75 in the checkpoint, 0.5 now" in message
    assert "model.init_args.preset: 'tiny' in the checkpoint, '18.3M' now" in message
    assert "--resume=false" in message and "--run_dir" in message and "\n" not in message


def test_only_a_larger_budget_continues_and_says_so(tmp_path):
    last = checkpoint(tmp_path)
    assert "larger budget (trainer.max_epochs 5 -> 8)" in check_resume(last, stage_settings(config(max_epochs=8)))
    with pytest.raises(ResumeRefused, match="trainer.max_epochs: 5 in the checkpoint, 3 now"):
        check_resume(last, stage_settings(config(max_epochs=3)))


def test_a_moved_run_folder_and_other_workers_still_resume(tmp_path):
    last = checkpoint(tmp_path)
    assert check_resume(last, stage_settings(config(run_dir="/elsewhere/b", num_workers=8))).startswith("resuming from")


def test_a_truncated_or_foreign_checkpoint_is_one_line_naming_it(tmp_path):
    last = checkpoint(tmp_path)
    last.write_bytes(last.read_bytes()[:300])
    with pytest.raises(ResumeRefused) as info:
        check_resume(last, stage_settings(config()))
    assert str(last) in str(info.value) and "not a readable checkpoint" in str(info.value) and "--resume=false" in str(info.value)
    torch.save({"state_dict": {}}, last)  # a Lightning checkpoint of another program
    with pytest.raises(ResumeRefused, match="records no dreamdiffusion settings"):
        check_resume(last, stage_settings(config()))
    torch.save({"weights": torch.zeros(1)}, last)
    with pytest.raises(ResumeRefused, match="not a Lightning checkpoint"):
        check_resume(last, stage_settings(config()))


def test_a_named_checkpoint_of_other_settings_offers_the_ckpt_path_ways_out(tmp_path):
    last = checkpoint(tmp_path)
    with pytest.raises(ResumeRefused) as info:
        check_resume(last, stage_settings(config(mask_ratio=0.5)), given_by="ckpt_path")
    message = str(info.value)
    assert "model.init_args.mask_ratio: 0.75 in the checkpoint, 0.5 now" in message
    assert "leave --ckpt_path out" in message and "--run_dir" not in message
    assert check_resume(last, stage_settings(config()), given_by="ckpt_path") == f"resuming from {last} (from --ckpt_path)"


def test_last_is_the_newest_last_checkpoint_as_lightning_picks_it(tmp_path):
    import os

    assert last_checkpoint(tmp_path / "absent") is None
    assert last_checkpoint(tmp_path) is None
    for age, name in ((300, "last.ckpt"), (100, "last-v1.ckpt"), (0, "epoch=3-step=8.ckpt"), (50, "last.ckpt.txt")):
        (tmp_path / name).write_bytes(b"x")
        os.utime(tmp_path / name, (1_000_000 - age, 1_000_000 - age))
    # a run started over beside an old last.ckpt writes last-v1.ckpt: that one is the run to continue
    assert last_checkpoint(tmp_path) == tmp_path / "last-v1.ckpt"
    assert resolve_ckpt_path("last", tmp_path) == tmp_path / "last-v1.ckpt"


def test_ckpt_path_is_a_file_or_last(tmp_path):
    assert resolve_ckpt_path(str(checkpoint(tmp_path)), tmp_path / "checkpoints") == tmp_path / "last.ckpt"
    with pytest.raises(ResumeRefused, match=r"--ckpt_path=.*nope.ckpt: no such checkpoint file; .* or 'last'"):
        resolve_ckpt_path(str(tmp_path / "nope.ckpt"), tmp_path / "checkpoints")
    with pytest.raises(ResumeRefused, match="--ckpt_path=best: fit resumes from a checkpoint file or from 'last'"):
        resolve_ckpt_path("best", tmp_path / "checkpoints")


def test_how_validation_samples_are_drawn_does_not_block_a_resume():
    """Validation grids (sampler, steps, guidance) watch a run; they do not shape its weights."""
    before, after = config(), config()
    before["model"]["init_args"].update(val_sampler="ddim", val_num_inference_steps=5, lr=1e-3)
    after["model"]["init_args"].update(val_sampler="DPMSolverMultistepScheduler", val_num_inference_steps=20, lr=1e-3)
    assert stage_settings(before) == stage_settings(after)
    after["model"]["init_args"]["lr"] = 2e-3
    assert stage_settings(before) != stage_settings(after)


def test_a_checkpoint_that_recorded_a_setting_now_known_not_to_shape_the_weights_resumes(tmp_path):
    recorded = stage_settings(config())
    recorded["model.init_args.val_sampler"] = "ddim"  # written before val_sampler was known not to shape the weights
    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": {}, "global_step": 4, CHECKPOINT_KEY: recorded}, path)
    assert check_resume(path, stage_settings(config())).startswith("resuming from")


def finetune_config(run_dir, encoder_dir):
    return {
        "run_dir": str(run_dir),
        "seed_everything": 0,
        "trainer": {"max_epochs": 5, "precision": "32-true"},
        "model": {"class_path": "dreamdiffusion.stages.finetune.EEGSDFinetuneModule",
                  "init_args": {"encoder_dir": None if encoder_dir is None else str(encoder_dir), "lr": 1e-3}},
        "data": {"class_path": "dreamdiffusion.data.imagenet_eeg.ImageNetEEGDataModule", "init_args": {}},
    }


def test_stage_two_records_the_sha256_of_its_stage_one_encoder_file(tmp_path):
    import hashlib

    encoder = tmp_path / "pretrain"
    encoder.mkdir()
    (encoder / "encoder.safetensors").write_bytes(b"weights A")
    settings = stage_settings(finetune_config(tmp_path, encoder))
    assert settings["model.init_args.encoder_dir"] == "${run_dir}/pretrain"
    assert settings["model.init_args.encoder_dir.sha256"] == hashlib.sha256(b"weights A").hexdigest()
    assert not any(k.endswith(".sha256") for k in stage_settings(finetune_config(tmp_path, None)))  # no_pretrain
    assert not any(k.endswith(".sha256") for k in stage_settings(finetune_config(tmp_path, tmp_path / "absent")))


def test_a_stage_one_encoder_rewritten_under_the_same_path_blocks_the_resume(tmp_path):
    encoder = tmp_path / "pretrain"
    encoder.mkdir()
    (encoder / "encoder.safetensors").write_bytes(b"weights A")
    last = tmp_path / "last.ckpt"
    torch.save({"state_dict": {}, CHECKPOINT_KEY: stage_settings(finetune_config(tmp_path, encoder))}, last)
    assert check_resume(last, stage_settings(finetune_config(tmp_path, encoder))).startswith("resuming from")
    (encoder / "encoder.safetensors").write_bytes(b"weights B")  # stage 1 run again
    with pytest.raises(ResumeRefused) as info:
        check_resume(last, stage_settings(finetune_config(tmp_path, encoder)))
    message = str(info.value)
    assert "model.init_args.encoder_dir: encoder.safetensors in '${run_dir}/pretrain' changed since the checkpoint" in message
    assert "--resume=false" in message and "\n" not in message


def test_a_checkpoint_recorded_before_encoder_hashes_still_resumes(tmp_path):
    encoder = tmp_path / "pretrain"
    encoder.mkdir()
    (encoder / "encoder.safetensors").write_bytes(b"weights A")
    old = {k: v for k, v in stage_settings(finetune_config(tmp_path, encoder)).items() if not k.endswith(".sha256")}
    last = tmp_path / "last.ckpt"
    torch.save({"state_dict": {}, CHECKPOINT_KEY: old}, last)
    assert check_resume(last, stage_settings(finetune_config(tmp_path, encoder))).startswith("resuming from")
