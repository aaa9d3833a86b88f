"""The demo's tiny CLIP warm-up: embeddings that separate the synthetic classes, from pictures of its own."""

import numpy as np
import pytest
import torch
from PIL import Image

from dreamdiffusion.data.synthetic import write_synthetic_imagenet_eeg
from dreamdiffusion.models.backbones import build_tiny_clip, load_clip
from dreamdiffusion.models.tiny_clip_warmup import ClipWarmup, warmup_corpus


def nearest_centroid_accuracy(embeds: torch.Tensor, labels: np.ndarray) -> float:
    """Leave-one-out: each picture against the mean (cosine) embedding of every class's other pictures."""
    e = torch.nn.functional.normalize(embeds, dim=-1)
    hits = 0
    for i in range(len(e)):
        others = np.arange(len(e)) != i
        centroids = torch.stack([e[others & (labels == k)].mean(0) for k in range(labels.max() + 1)])
        hits += int((centroids @ e[i]).argmax() == labels[i])
    return hits / len(e)


@pytest.fixture(scope="module")
def dataset_pictures(tmp_path_factory):
    folder = write_synthetic_imagenet_eeg(tmp_path_factory.mktemp("syn") / "data", classes=5, images_per_class=4, subjects=1)
    paths = sorted((folder / "images").glob("*/*.JPEG"))
    return [Image.open(p).convert("RGB") for p in paths], np.array([int(p.parent.name[2:]) for p in paths])


def embed(folder, pictures):
    model, processor = load_clip(str(folder), local_files_only=True)
    with torch.no_grad():
        return model(pixel_values=processor(images=pictures, return_tensors="pt").pixel_values).image_embeds


def test_warmed_up_clip_separates_classes_of_pictures_it_never_saw(tmp_path, dataset_pictures):
    pictures, labels = dataset_pictures
    random = embed(build_tiny_clip(tmp_path / "random"), pictures)
    warm = embed(build_tiny_clip(tmp_path / "warm", warmup=ClipWarmup(classes=5, pictures_per_class=10, steps=60)), pictures)
    assert nearest_centroid_accuracy(warm, labels) >= 0.9
    assert nearest_centroid_accuracy(random, labels) < 0.6


def test_the_warmup_corpus_shares_no_picture_with_the_dataset(dataset_pictures):
    pictures, _ = dataset_pictures
    corpus, corpus_labels = warmup_corpus(ClipWarmup(classes=5, pictures_per_class=4))
    assert corpus_labels.tolist() == [k for k in range(5) for _ in range(4)]
    # the corpus draws from a stream of its own: the dataset's picture sizes, drawn first, do not recur
    assert [p.size for p in corpus] != [p.size for p in pictures]


def test_weights_tiny_warms_up_on_request_and_refuses_one_class(cli, tmp_path, capsys):
    assert cli("weights", "tiny", "--out", str(tmp_path / "w"), "--clip-warmup-classes", "3") == 0
    assert (tmp_path / "w" / "clip" / "model.safetensors").is_file()
    capsys.readouterr()
    assert cli("weights", "tiny", "--out", str(tmp_path / "w1"), "--clip-warmup-classes", "1") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: dreamdiffusion weights tiny: argument --clip-warmup-classes") and len(err.splitlines()) == 1
    assert "use 0 (no warm-up) or at least 2 classes" in err
    assert not (tmp_path / "w1").exists()  # refused before anything was written
