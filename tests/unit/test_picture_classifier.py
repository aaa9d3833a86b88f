"""The demo's evaluation classifier: trained on the generator's own pictures, loaded like any eval network."""

import json

import pytest
import torch

from dreamdiffusion.models.eval_models import ClassifierConfig, InceptionConfig, load_classifier, load_inception
from dreamdiffusion.models.picture_classifier import (
    PictureClassifierConfig,
    held_out_accuracy,
    train_picture_classifier,
    write_picture_classifier,
)
from dreamdiffusion.models.provenance import read_provenance


def _load(path, config):
    return load_classifier(ClassifierConfig(
        architecture=config.architecture, weights=None, weights_path=str(path), num_classes=config.classes, image_size=config.image_size
    ))


@pytest.fixture(scope="module")
def smoke_classifier(tmp_path_factory):
    config = PictureClassifierConfig(classes=3, pictures_per_class=4, steps=2, batch_size=4)
    model, losses = train_picture_classifier(config)
    return write_picture_classifier(tmp_path_factory.mktemp("clf"), model, config), config, losses


def test_the_classifier_file_loads_through_load_classifier_and_says_what_it_learned_from(smoke_classifier):
    path, config, losses = smoke_classifier
    assert len(losses) == 2
    classifier = _load(path, config)
    probs = classifier(torch.rand(5, 3, 64, 64))
    assert probs.shape == (5, 3) and torch.allclose(probs.sum(1), torch.ones(5))
    assert "drawn from default_rng([0, " in read_provenance(path)
    assert json.loads(path.with_suffix(".json").read_text()) == {
        "architecture": config.architecture, "num_classes": 3, "image_size": 32, "builder_kwargs": {}
    }


def test_the_classifier_is_the_inception_of_fid_and_is(smoke_classifier):
    path, config, _ = smoke_classifier
    pool, logits = load_inception(InceptionConfig(architecture="classifier", weights_path=str(path)))
    images = torch.randint(0, 256, (4, 3, 64, 64), dtype=torch.uint8)
    features = pool(images)
    assert features.shape == (4, pool.num_features) and pool.num_features == 512  # ResNet-18's pooled features
    assert logits(images).shape == (4, 3) and logits.num_features == 3
    assert pool.provenance == logits.provenance == read_provenance(path)  # FID/IS labelled as their classifier is
    # the logits are the classifier's own: softmax of them is what load_classifier returns
    assert torch.allclose(logits(images).softmax(1), _load(path, config)(images.float() / 255), atol=1e-5)
    with pytest.raises(TypeError, match="uint8"):
        pool(images.float())


def test_fid_and_is_run_on_the_classifier_features(smoke_classifier):
    from torchmetrics.image import FrechetInceptionDistance

    from dreamdiffusion.metrics import InceptionScore

    path, _, _ = smoke_classifier
    pool, logits = load_inception(InceptionConfig(architecture="classifier", weights_path=str(path)))
    generator = torch.Generator().manual_seed(0)
    real = torch.randint(0, 256, (8, 3, 64, 64), dtype=torch.uint8, generator=generator)
    fid = FrechetInceptionDistance(feature=pool, normalize=False)
    fid.update(real, real=True)
    fid.update(real, real=False)
    assert float(fid.compute()) == pytest.approx(0.0, abs=1e-2)  # the same pictures on both sides
    fid.update(torch.zeros_like(real), real=False)
    assert float(fid.compute()) > 0.1
    score = InceptionScore(logits, splits=2)
    score.update(real)
    mean, _ = score.compute()
    assert 1.0 <= float(mean) <= 3.0  # IS lies between 1 and the class count


def test_a_classifier_inception_without_its_json_is_a_clear_error(smoke_classifier, tmp_path):
    path, _, _ = smoke_classifier
    lonely = tmp_path / "classifier.safetensors"
    lonely.write_bytes(path.read_bytes())
    with pytest.raises(FileNotFoundError, match=r"classifier\.json is missing"):
        load_inception(InceptionConfig(architecture="classifier", weights_path=str(lonely)))
    with pytest.raises(ValueError, match="needs weights_path"):
        load_inception(InceptionConfig(architecture="classifier"))


def test_one_class_is_refused():
    with pytest.raises(ValueError, match="at least 2 classes"):
        PictureClassifierConfig(classes=1)


@pytest.mark.slow
def test_the_demo_classifier_knows_held_out_generator_pictures(tmp_path):
    config = PictureClassifierConfig()  # the demo's: 10 classes
    model, _ = train_picture_classifier(config)
    classifier = _load(write_picture_classifier(tmp_path, model, config), config)
    assert held_out_accuracy(classifier, config.classes, pictures_per_class=30) >= 0.95
