"""Stage 3 on an imported authors' checkpoint (tiny, in their format): `configs/eval_authors.yaml` parses, and
the imported pipeline runs through `dreamdiffusion test` with the authors' sampler (PLMS) and DDIM."""

import json
import sys
from pathlib import Path

import pytest
from tiny_weights import tiny_eval_networks

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from authors_format import TINY, TINY_LDM_CONFIG, build_authors_checkpoint


def test_eval_authors_config_is_the_authors_sampling(cli, repo, capsys):
    with pytest.raises(SystemExit):
        cli("test", "-c", str(repo / "configs/eval_authors.yaml"), "--print_config")
    printed = capsys.readouterr().out
    assert "sampler: plms" in printed and "num_inference_steps: 250" in printed and "subject: 4" in printed
    assert "pipeline: runs/authors/pipeline" in printed and "guidance_scale: 1.0" in printed


@pytest.mark.parametrize("sampler", ["plms", "ddim"])
def test_imported_checkpoint_is_scored_by_stage_3(cli, repo, tmp_path, sampler):
    import yaml

    from dreamdiffusion.commands import main as plain
    from dreamdiffusion.data.synthetic import write_synthetic_imagenet_eeg

    assert plain(["weights", "tiny", "--out", str(tmp_path / "weights")]) == 0
    write_synthetic_imagenet_eeg(tmp_path / "data", classes=3, images_per_class=6, subjects=1, seed=0)
    build_authors_checkpoint(tmp_path / "checkpoint.pth", tmp_path)
    (tmp_path / "config15.yaml").write_text(yaml.safe_dump(TINY_LDM_CONFIG))
    assert plain(["weights", "import-authors", "--checkpoint", str(tmp_path / "checkpoint.pth"), "--out",
                  str(tmp_path / "authors"), "--sd-config", str(tmp_path / "config15.yaml"),
                  "--encoder-heads", str(TINY["heads"])]) == 0
    assert cli("test", "-c", str(repo / "configs/demo/eval.yaml"), f"--run_dir={tmp_path}",
               f"--model.init_args.pipeline={tmp_path / 'authors'}", f"--model.init_args.sampler={sampler}",
               "--model.init_args.num_inference_steps=2", "--model.init_args.image_size=64",
               "--model.init_args.bootstrap_resamples=10", "--model.init_args.bootstrap_set_resamples=0",
               *tiny_eval_networks(tmp_path)) == 0
    result = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert result["settings"]["sampler"] == sampler and result["generated_images"] == 2 * result["trials"]
    assert isinstance(result["metrics"]["fid"], float) and isinstance(result["metrics"]["retrieval_top1"], float)
