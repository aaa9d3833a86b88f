"""`dreamdiffusion weights demo`: the demo's models never see a picture of the synthetic dataset; bad input."""

import hashlib
import io
import json

import pytest
from safetensors import safe_open

from dreamdiffusion.data import synthetic_pictures
from dreamdiffusion.data.synthetic import SyntheticConfig, dataset_pictures, own_pictures, write_synthetic_imagenet_eeg
from dreamdiffusion.models.demo_weights import DemoChecks, write_demo_weights
from dreamdiffusion.models.picture_classifier import CLASSIFIER_TRAIN_STREAM, HELD_OUT_STREAM, PictureClassifierConfig
from dreamdiffusion.models.provenance import RANDOM, read_provenance
from dreamdiffusion.models.tiny_clip_warmup import ClipWarmup, warmup_corpus
from dreamdiffusion.stages.base_model import BASE_MODEL_STREAM, BaseModelConfig


def pixel_hash(picture) -> str:
    """Hash of a PIL picture's size and pixel bytes (before any JPEG compression)."""
    return hashlib.sha256(repr(picture.size).encode() + picture.tobytes()).hexdigest()


def dataset_hashes(classes: int, images_per_class: int, seed: int = 0) -> set[str]:
    """Every picture of the synthetic dataset of that size, all splits, regenerated from the writer's stream."""
    cfg = SyntheticConfig(classes=classes, images_per_class=images_per_class, seed=seed)
    return {pixel_hash(picture) for _, picture in dataset_pictures(cfg)}


def test_the_writer_stores_exactly_the_pictures_dataset_pictures_regenerates(tmp_path):
    folder = write_synthetic_imagenet_eeg(tmp_path / "data", classes=3, images_per_class=4, subjects=1)
    regenerated = list(dataset_pictures(SyntheticConfig(classes=3, images_per_class=4)))
    assert len(regenerated) == 12
    for name, picture in regenerated:
        encoded = io.BytesIO()
        picture.save(encoded, format="JPEG", quality=90)
        assert (folder / "images" / name.split("_")[0] / f"{name}.JPEG").read_bytes() == encoded.getvalue()


def test_the_demo_models_own_pictures_are_never_the_datasets():
    """At the demo's sizes: 10 classes; the dataset with the demo's 5 and a larger 50 images per class."""
    seen = {
        "base model": own_pictures(BASE_MODEL_STREAM, 10, BaseModelConfig().pictures_per_class)[0],
        "classifier": own_pictures(CLASSIFIER_TRAIN_STREAM, 10, PictureClassifierConfig().pictures_per_class)[0],
        "held-out check": own_pictures(HELD_OUT_STREAM, 10, 30)[0],
        "tiny CLIP": warmup_corpus(ClipWarmup(classes=10))[0],
    }
    forbidden = dataset_hashes(10, 5) | dataset_hashes(10, 50)
    hashes = {name: {pixel_hash(p) for p in pictures} for name, pictures in seen.items()}
    for name, own in hashes.items():
        assert len(own) == len(seen[name])  # distinct pictures: the hash tells pictures apart
        assert not own & forbidden, name
    assert not hashes["classifier"] & hashes["held-out check"]


def test_no_dataset_picture_is_drawn_while_writing_the_demo_weights(tmp_path, monkeypatch):
    """Every picture synth_image draws during `weights demo` (stage 0, classifier, CLIP, checks) is recorded."""
    drawn = []
    original = synthetic_pictures.synth_image

    def recording(*args, **kwargs):
        picture = original(*args, **kwargs)
        drawn.append(pixel_hash(picture))
        return picture

    monkeypatch.setattr(synthetic_pictures, "synth_image", recording)
    base = BaseModelConfig(classes=3, pictures_per_class=3, vae_steps=1, vae_batch_size=2, unet_steps=1, unet_batch_size=2)
    classifier = PictureClassifierConfig(classes=3, pictures_per_class=3, steps=1, batch_size=2)
    checks = DemoChecks(samples_per_class=1, num_inference_steps=1, held_out_per_class=2)
    report = write_demo_weights(tmp_path / "w", base, classifier, clip_warmup_steps=1, checks=checks)
    # base model 9, classifier 9, held-out 6 (+ 30 for the VAE PSNR), CLIP warm-up 3 x 20
    assert len(drawn) == 9 + 30 + 9 + 6 + 60
    assert not set(drawn) & dataset_hashes(3, 5)
    assert 0.0 <= report.caption_sample_accuracy <= 1.0 and 0.0 <= report.classifier_held_out_accuracy <= 1.0
    w = tmp_path / "w"
    assert read_provenance(w / "eval" / "alexnet.safetensors") == RANDOM
    for trained in ("eval/classifier.safetensors", "sd/unet/diffusion_pytorch_model.safetensors", "clip/model.safetensors"):
        assert "none from a synthetic dataset" in read_provenance(w / trained)
    manifest = json.loads((w / "demo_weights.json").read_text())
    assert manifest["report"]["caption_sample_accuracy"] == report.caption_sample_accuracy
    assert (w / "caption_samples.png").is_file()


def test_weights_tiny_marks_its_files_random(cli, tmp_path):
    assert cli("weights", "tiny", "--out", str(tmp_path / "w")) == 0
    files = sorted((tmp_path / "w").rglob("*.safetensors"))
    assert len(files) == 6  # unet, vae, clip, classifier, inception, alexnet
    assert {read_provenance(f) for f in files} == {RANDOM}


def test_one_class_is_a_usage_error_before_anything_is_written(cli, tmp_path, capsys):
    assert cli("weights", "demo", "--out", str(tmp_path / "w"), "--classes", "1") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: dreamdiffusion weights demo: argument --classes: 1: the demo's models need at least 2 classes")
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "w").exists()


def test_a_folder_that_is_not_ours_is_refused_and_left_alone(cli, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    assert cli("weights", "demo", "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert f"--out {out} holds thesis.tex, which `dreamdiffusion weights` did not write" in err
    assert sorted(p.name for p in out.iterdir()) == ["thesis.tex"]
    (tmp_path / "file").write_text("x")
    assert cli("weights", "demo", "--out", str(tmp_path / "file")) == 2
    assert "is a file" in capsys.readouterr().err


@pytest.mark.slow
def test_a_small_budget_base_model_draws_classes_the_classifier_recognises(tmp_path):
    """3 classes (red circle, green square, blue triangle), about a sixth of the demo's budget: 73% of its caption
    samples were recognised when this was written (chance 33%; the full budget reaches 98% on 10 classes)."""
    base = BaseModelConfig(classes=3, pictures_per_class=40, vae_steps=150, unet_steps=400)
    classifier = PictureClassifierConfig(classes=3, steps=60)
    checks = DemoChecks(samples_per_class=10, held_out_per_class=20)
    report = write_demo_weights(tmp_path / "w", base, classifier, clip_warmup_steps=20, checks=checks)
    assert report.classifier_held_out_accuracy >= 0.95
    assert report.caption_sample_accuracy >= 0.6


TINY_BASE = BaseModelConfig(classes=3, pictures_per_class=3, vae_steps=1, vae_batch_size=2, unet_steps=1, unet_batch_size=2)
TINY_CLASSIFIER = PictureClassifierConfig(classes=3, pictures_per_class=3, steps=1, batch_size=2)
TINY_CHECKS = DemoChecks(samples_per_class=1, num_inference_steps=1, held_out_per_class=2)


def file_hashes(folder) -> dict[str, str]:
    """SHA-256 of every weights file's tensors and metadata and of every picture (a safetensors header lists
    its metadata keys in no fixed order, so the file bytes are not compared)."""
    hashes = {}
    for path in sorted(folder.rglob("*")):
        if path.suffix == ".png":
            hashes[str(path.relative_to(folder))] = hashlib.sha256(path.read_bytes()).hexdigest()
        elif path.suffix == ".safetensors":
            digest = hashlib.sha256()
            with safe_open(str(path), "pt") as f:
                digest.update(json.dumps(f.metadata(), sort_keys=True).encode())
                for key in sorted(f.keys()):
                    digest.update(key.encode() + f.get_tensor(key).numpy().tobytes())
            hashes[str(path.relative_to(folder))] = digest.hexdigest()
    return hashes


def test_the_parts_run_one_by_one_write_what_one_run_writes(tmp_path):
    whole = write_demo_weights(tmp_path / "one", TINY_BASE, TINY_CLASSIFIER, clip_warmup_steps=1, checks=TINY_CHECKS)
    for part in ("clip-eval", "base-model"):  # any order: each part seeds itself
        assert write_demo_weights(tmp_path / "parts", TINY_BASE, TINY_CLASSIFIER, 1, TINY_CHECKS, parts=(part,)) is None
    assert not (tmp_path / "parts" / "demo_weights.json").exists()
    split = write_demo_weights(tmp_path / "parts", TINY_BASE, TINY_CLASSIFIER, 1, TINY_CHECKS, parts=("checks",))
    hashes = file_hashes(tmp_path / "one")
    assert len(hashes) >= 5 and hashes == file_hashes(tmp_path / "parts")
    assert (split.caption_sample_accuracy, split.classifier_held_out_accuracy, split.vae_psnr) == (
        whole.caption_sample_accuracy, whole.classifier_held_out_accuracy, whole.vae_psnr)
    assert set(split.wall_seconds) == {"base_model", "clip", "classifier", "checks"}


def test_the_checks_refuse_a_missing_part_and_write_nothing(cli, tmp_path, capsys):
    out = tmp_path / "w"
    assert cli("weights", "demo", "--out", str(out), "--part", "checks") == 2
    err = capsys.readouterr().err
    assert f"{out}/parts/base-model.json is missing" in err
    assert f"run `dreamdiffusion weights demo --out {out} --part base-model` first" in err
    assert err.startswith("error: ") and len(err.splitlines()) == 1
    assert not out.exists()  # nothing written, not even the folder


def test_the_checks_refuse_parts_made_with_other_settings(cli, tmp_path, capsys):
    out = tmp_path / "w"
    write_demo_weights(out, TINY_BASE, TINY_CLASSIFIER, 1, TINY_CHECKS, parts=("base-model", "clip-eval"))
    other_seed = BaseModelConfig(**{**TINY_BASE.to_dict(), "seed": 1})
    with pytest.raises(ValueError, match=r"parts/base-model.json: part 'base-model' was made with base_model.seed=0, this run asks for 1"):
        write_demo_weights(out, other_seed, PictureClassifierConfig(**{**TINY_CLASSIFIER.to_dict(), "seed": 1}), 1, TINY_CHECKS,
                           parts=("checks",))
    # the command line asks for the demo's full budget: the small records do not match it
    assert cli("weights", "demo", "--out", str(out), "--part", "checks") == 2
    err = capsys.readouterr().err
    assert "part 'base-model' was made with base_model.classes=3, this run asks for 10;" in err
    assert not (out / "demo_weights.json").exists() and (out / "sd").is_dir()
    record = json.loads((out / "parts" / "base-model.json").read_text())
    del record["vae_psnr"]
    (out / "parts" / "base-model.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match=r"base-model.json is not a part record of `weights demo` \('vae_psnr'\)"):
        write_demo_weights(out, TINY_BASE, TINY_CLASSIFIER, 1, TINY_CHECKS, parts=("checks",))
    write_demo_weights(out, TINY_BASE, TINY_CLASSIFIER, 1, TINY_CHECKS, parts=("base-model",))
    (out / "parts" / "clip-eval.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"clip-eval.json is not a part record .*--part clip-eval` to write it again"):
        write_demo_weights(out, TINY_BASE, TINY_CLASSIFIER, 1, TINY_CHECKS, parts=("checks",))
    assert not (out / "demo_weights.json").exists()


def test_an_unknown_part_is_refused():
    with pytest.raises(ValueError, match=r"parts \['vae'\] are not parts of `weights demo`; use some of base-model, clip-eval, checks"):
        write_demo_weights("unused", parts=("vae",))
