"""Resume continues only a checkpoint of the same settings (a larger budget may differ); bad files are one line."""

import pytest
import torch

from dreamdiffusion.resume_check import (
    CHECKPOINT_KEY,
    ResumeRefused,
    check_resume,
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
