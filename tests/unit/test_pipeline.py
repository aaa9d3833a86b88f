"""DreamDiffusionPipeline as a diffusers pipeline: loading (folder, DiffusionPipeline, hub cache, first format),
the scheduler it holds, per-image generators, outputs, refusal of pickles and changed weights, model card."""

import json
import shutil

import numpy as np
import pytest
import torch

from dreamdiffusion.pipeline import DreamDiffusionPipeline, build_tiny_pipeline

EEG = torch.randn(4, 128, 512, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return build_tiny_pipeline(tmp_path_factory.mktemp("pipe") / "pipeline", seed=0)


@pytest.fixture(scope="module")
def pipe(folder):
    pipe = DreamDiffusionPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generators(*seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


def noise_prediction(pipe):
    latents = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    return pipe.predict_noise(latents, torch.tensor([10, 600]), pipe.encode_eeg(EEG[:2]))


def copy(folder, tmp_path):
    return shutil.copytree(folder, tmp_path / "pipeline")


def test_loads_through_diffusion_pipeline_and_its_own_class(folder, pipe):
    from diffusers import DiffusionPipeline, DPMSolverMultistepScheduler

    generic = DiffusionPipeline.from_pretrained(folder)
    assert type(generic) is DreamDiffusionPipeline and issubclass(DreamDiffusionPipeline, DiffusionPipeline)
    assert isinstance(pipe.scheduler, DPMSolverMultistepScheduler) and pipe.scheduler.config.algorithm_type == "dpmsolver++"
    assert set(pipe.components) == {"unet", "vae", "scheduler", "condition_model"}
    assert torch.equal(noise_prediction(generic), noise_prediction(pipe))
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "DreamDiffusionPipeline"
    assert index["condition_model"] == ["dreamdiffusion.models.condition", "EEGConditionModel"]


def test_torch_dtype_reaches_every_model(folder):
    half = DreamDiffusionPipeline.from_pretrained(folder, torch_dtype=torch.bfloat16)
    assert {half.unet.dtype, half.vae.dtype, half.condition_model.dtype} == {torch.bfloat16}


def test_a_swapped_scheduler_is_the_one_used_and_is_saved(pipe, tmp_path):
    from diffusers import DDIMScheduler

    dpm = pipe(EEG[:1], num_inference_steps=4, generator=generators(3), output_type="np").images
    original = pipe.scheduler
    try:
        pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
        calls = []
        step = pipe.scheduler.step
        pipe.scheduler.step = lambda *a, **k: calls.append(a[1]) or step(*a, **k)
        ddim = pipe(EEG[:1], num_inference_steps=4, generator=generators(3), output_type="np").images
        assert len(calls) == 4 and np.abs(dpm - ddim).max() > 1e-3
        del pipe.scheduler.step
        pipe.save_pretrained(tmp_path / "ddim")
    finally:
        pipe.scheduler = original
    reloaded = DreamDiffusionPipeline.from_pretrained(tmp_path / "ddim")
    assert type(reloaded.scheduler).__name__ == "DDIMScheduler"
    assert "`DDIMScheduler`" in (tmp_path / "ddim" / "README.md").read_text()


def test_a_list_of_generators_makes_images_independent_of_the_batch(pipe):
    seeds = [11, 12, 13, 14]
    together = pipe(EEG, num_inference_steps=3, generator=generators(*seeds), output_type="np").images
    alone = np.concatenate([
        pipe(EEG[i], num_inference_steps=3, generator=generators(s), output_type="np").images for i, s in enumerate(seeds)
    ])
    assert together.shape == (4, 64, 64, 3)
    np.testing.assert_allclose(together, alone, atol=1e-5, rtol=0)
    assert np.abs(together[0] - together[1]).max() > 1e-3


def test_num_images_per_eeg_orders_images_by_eeg_then_sample(pipe):
    two = pipe(EEG[:2], num_images_per_eeg=2, num_inference_steps=2, generator=generators(1, 2, 3, 4), output_type="pt").images
    assert two.shape == (4, 3, 64, 64) and 0 <= two.min() and two.max() <= 1
    eeg1_sample0 = pipe(EEG[1], num_inference_steps=2, generator=generators(3), output_type="pt").images
    torch.testing.assert_close(two[2:3], eeg1_sample0, atol=1e-5, rtol=0)


def test_output_types(pipe):
    pil = pipe(EEG[0], num_inference_steps=2, generator=generators(0)).images
    assert len(pil) == 1 and pil[0].size == (64, 64) and pil[0].mode == "RGB"
    latents = pipe(EEG[0], num_inference_steps=2, generator=generators(0), output_type="latent").images
    assert latents.shape == (1, 4, 8, 8)
    (as_tuple,) = pipe(EEG[0], num_inference_steps=2, generator=generators(0), output_type="np", return_dict=False)
    assert np.abs(np.asarray(pil[0], dtype=float) / 255 - as_tuple[0]).max() <= 1 / 255 + 1e-6


def test_bad_inputs_say_what_was_expected(pipe):
    with pytest.raises(ValueError, match=r"eeg must be \[B, 128, 512\] or \[128, 512\], got shape \(2, 64, 512\)"):
        pipe(torch.randn(2, 64, 512))
    with pytest.raises(ValueError, match="got 3 generators for 2 EEG × 2 images = 4; pass one generator per image"):
        pipe(EEG[:2], num_images_per_eeg=2, generator=generators(1, 2, 3))
    with pytest.raises(ValueError, match="output_type must be one of pil, np, pt, latent, got 'jpeg'"):
        pipe(EEG[0], output_type="jpeg")


def test_progress_bar_counts_the_scheduler_steps(pipe, capsys):
    pipe.set_progress_bar_config(disable=False)
    try:
        pipe(EEG[0], num_inference_steps=3, generator=generators(0))
    finally:
        pipe.set_progress_bar_config(disable=True)
    assert "3/3" in capsys.readouterr().err


def make_hub_cache(folder, cache, repo_id="someone/tiny-dreamdiffusion", commit="0" * 39 + "1"):
    """A huggingface_hub cache holding ``folder`` as ``repo_id``@main (refs/main → snapshots/<commit>/)."""
    from huggingface_hub.constants import REPO_ID_SEPARATOR

    repo = cache / REPO_ID_SEPARATOR.join(["models", *repo_id.split("/")])
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(folder, repo / "snapshots" / commit)
    return repo_id


def test_a_hub_id_resolves_through_the_hub_cache(folder, pipe, tmp_path):
    from diffusers import DiffusionPipeline

    repo_id = make_hub_cache(folder, tmp_path / "hub")
    loaded = DreamDiffusionPipeline.from_pretrained(repo_id, cache_dir=tmp_path / "hub", local_files_only=True)
    assert torch.equal(noise_prediction(loaded), noise_prediction(pipe))
    assert loaded.config._name_or_path == repo_id
    generic = DiffusionPipeline.from_pretrained(repo_id, cache_dir=tmp_path / "hub", local_files_only=True)
    assert type(generic) is DreamDiffusionPipeline
    with pytest.raises(FileNotFoundError, match="someone/absent is not a local folder, and as a hub id it could not be fetched"):
        DreamDiffusionPipeline.from_pretrained("someone/absent", cache_dir=tmp_path / "hub", local_files_only=True)


class Hostile:
    """Unpickling this creates a file: proof that a pickle was executed."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pickle_in_the_folder_is_never_unpickled(folder, tmp_path):
    import pickle

    from diffusers import DiffusionPipeline

    from dreamdiffusion.checksums import write_checksums

    marker = tmp_path / "pwned"
    broken = copy(folder, tmp_path)
    (broken / "unet" / "diffusion_pytorch_model.bin").write_bytes(pickle.dumps(Hostile(marker)))
    with pytest.raises(ValueError, match="diffusion_pytorch_model.bin is not listed in .*checksums.json"):
        DreamDiffusionPipeline.from_pretrained(broken)
    # the pickle instead of the safetensors, with a manifest rewritten to list it
    (broken / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    write_checksums(broken, "**/diffusion_pytorch_model.*")
    with pytest.raises(OSError, match="diffusion_pytorch_model.safetensors"):
        DreamDiffusionPipeline.from_pretrained(broken)
    with pytest.raises(OSError, match="Unable to load weights from checkpoint file"):  # torch.load(weights_only=True)
        DiffusionPipeline.from_pretrained(broken)
    assert not marker.exists()


def test_changed_weights_are_refused(folder, tmp_path):
    from diffusers import DiffusionPipeline

    broken = copy(folder, tmp_path)
    weights = broken / "vae" / "diffusion_pytorch_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    for load in (DreamDiffusionPipeline.from_pretrained, DiffusionPipeline.from_pretrained):
        with pytest.raises(ValueError, match=r"vae/diffusion_pytorch_model.safetensors does not match its SHA-256 .*re-export"):
            load(broken)
    (broken / "checksums.json").unlink()
    with pytest.raises(FileNotFoundError, match="checksums.json is missing: the weights of .* cannot be verified; re-export"):
        DreamDiffusionPipeline.from_pretrained(broken)


def test_model_card_names_base_model_encoder_data_and_metrics(pipe, tmp_path):
    from dreamdiffusion.models.backbones import SD15  # a name for the card: nothing is fetched

    pipe.save_pretrained(tmp_path / "p", base_model=SD15,
                         data="ImageNet-EEG (eeg_5_95_std.pth)", metrics={"val/loss": 0.1234, "top1": 0.45})
    card = (tmp_path / "p" / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: diffusers\n")
    assert f"base_model: {SD15}\n" in card
    assert "preset `tiny`" in card and "ImageNet-EEG (eeg_5_95_std.pth)" in card
    assert "| val/loss | 0.1234 |" in card and "| top1 | 0.45 |" in card


def test_push_to_hub_uploads_the_saved_folder_with_its_model_card(pipe, monkeypatch):
    import huggingface_hub

    uploaded = {}

    class Repo:
        repo_id = "someone/pushed"

    def upload(self, folder, repo_id, **kwargs):  # no network: look at what would be sent
        uploaded.update(repo_id=repo_id, files=sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()),
                        card=(folder / "README.md").read_text())

    monkeypatch.setattr(huggingface_hub, "create_repo", lambda repo_id, **kwargs: Repo())
    monkeypatch.setattr(DreamDiffusionPipeline, "_upload_folder", upload)
    pipe.push_to_hub("someone/pushed", data="synthetic")
    assert uploaded["repo_id"] == "someone/pushed"
    assert {"model_index.json", "checksums.json", "README.md", "condition_model/config.json",
            "unet/diffusion_pytorch_model.safetensors"} <= set(uploaded["files"])
    assert "# DreamDiffusion pipeline" in uploaded["card"] and "| Training data | synthetic |" in uploaded["card"]


def write_first_format(pipe, folder):
    """A pipeline folder as the first format wrote it: condition/ (condition.json with the SHA-256), DDPM."""
    from diffusers import DDPMScheduler
    from safetensors.torch import save_file

    from dreamdiffusion.atomic import sha256

    pipe.unet.save_pretrained(folder / "unet")
    pipe.vae.save_pretrained(folder / "vae")
    DDPMScheduler.from_config(pipe.scheduler.config).save_pretrained(folder / "scheduler")
    (folder / "condition").mkdir()
    state = {k: v.contiguous() for k, v in pipe.condition_model.state_dict().items()}
    save_file(state, str(folder / "condition" / "condition.safetensors"), metadata={"format": "dreamdiffusion.eeg_condition/1"})
    meta = {"format": "dreamdiffusion.eeg_condition/1", "config": pipe.condition_model.condition_config.to_dict(),
            "sha256": sha256(folder / "condition" / "condition.safetensors")}
    (folder / "condition" / "condition.json").write_text(json.dumps(meta))
    index = {"_class_name": "DreamDiffusionPipeline", "_dreamdiffusion_version": "0.1.0",
             "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
             "scheduler": ["diffusers", "DDPMScheduler"], "condition": ["dreamdiffusion", "EEGConditionModel"]}
    (folder / "model_index.json").write_text(json.dumps(index))


def test_a_folder_of_the_first_format_loads_and_saves_in_the_new_one(pipe, tmp_path):
    from diffusers import DiffusionPipeline

    write_first_format(pipe, tmp_path / "old")
    with pytest.raises(ValueError, match="first format .* loads only through .*DreamDiffusionPipeline.from_pretrained; save it again"):
        DiffusionPipeline.from_pretrained(tmp_path / "old")
    old = DreamDiffusionPipeline.from_pretrained(tmp_path / "old")
    assert type(old.scheduler).__name__ == "DDIMScheduler"  # what the first format sampled with by default
    assert torch.equal(noise_prediction(old), noise_prediction(pipe))
    shutil.rmtree(tmp_path / "old" / "vae")
    with pytest.raises(FileNotFoundError, match=r"incomplete: missing vae \(vae/config.json\)"):
        DreamDiffusionPipeline.from_pretrained(tmp_path / "old")
    old.save_pretrained(tmp_path / "new")
    assert torch.equal(noise_prediction(DreamDiffusionPipeline.from_pretrained(tmp_path / "new")), noise_prediction(pipe))
