import pytest
import torch
from torch import nn

from dreamdiffusion.metrics import ImageMetrics, MetricSettings, NWayTopKAccuracy, distractor_trials
from dreamdiffusion.models.eval_models import (
    ClassifierConfig,
    InceptionConfig,
    LPIPSConfig,
    load_classifier,
    load_inception,
    load_lpips_net,
)
from dreamdiffusion.models.tiny_eval_networks import build_tiny_eval_networks


@pytest.fixture(scope="module")
def networks(tmp_path_factory):
    return build_tiny_eval_networks(tmp_path_factory.mktemp("evalnets"), seed=0, n_classes=100)


@pytest.fixture(scope="module")
def image_metrics(networks):
    pool, logits = load_inception(InceptionConfig("tiny", networks["inception"]))
    return lambda **kw: ImageMetrics(pool, logits, load_lpips_net(LPIPSConfig(networks["lpips"])), MetricSettings(is_splits=2, **kw))


def smooth_images(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 8, 8, generator=g)
    return nn.functional.interpolate(low, size=(64, 64), mode="bilinear")


def test_identical_sets_score_perfectly_and_shuffled_sets_worse(image_metrics):
    images = smooth_images(8, 0)
    same = image_metrics()
    same.update(images, images.clone())
    perfect = same.compute()
    shuffled = image_metrics()
    shuffled.update(images, images[torch.roll(torch.arange(8), 1)])
    worse = shuffled.compute()
    assert perfect["ssim"] == pytest.approx(1.0, abs=1e-5)
    assert perfect["psnr"] > 60 and perfect["lpips"] == pytest.approx(0.0, abs=1e-6)
    assert abs(perfect["fid"]) < 1e-2
    assert worse["ssim"] < 0.9 and worse["psnr"] < 30 and worse["lpips"] > 1e-3
    assert worse["fid"] == pytest.approx(perfect["fid"], abs=1e-2)  # the same set of images: FID is order-blind
    assert perfect["inception_score"] >= 1.0


def test_fid_grows_with_a_different_distribution(image_metrics):
    metric = image_metrics()
    metric.update(smooth_images(16, 1) * 0.3, smooth_images(16, 2))
    assert metric.compute()["fid"] > 1e-3


def test_mismatched_sizes_are_refused(image_metrics):
    with pytest.raises(ValueError, match="resize the ground truth"):
        image_metrics().update(torch.rand(2, 3, 64, 64), torch.rand(2, 3, 32, 32))


def test_distractor_trials_exclude_the_target_and_are_seeded():
    trials = distractor_trials(100, target=7, n_way=50, n_trials=20, seed=3)
    assert trials.shape == (20, 50) and (trials[:, 0] == 7).all() and (trials[:, 1:] != 7).all()
    assert all(len(set(row.tolist())) == 50 for row in trials)
    assert torch.equal(trials, distractor_trials(100, 7, 50, 20, seed=3))
    assert not torch.equal(trials, distractor_trials(100, 7, 50, 20, seed=4))
    with pytest.raises(ValueError, match="n_way must be in"):
        distractor_trials(40, 0, 50, 1, 0)


def test_n_way_accuracy_is_one_for_ground_truth_images_and_chance_for_unrelated(networks):
    classifier = load_classifier(ClassifierConfig("squeezenet1_1", None, networks["classifier"], num_classes=100, image_size=64))
    assert classifier.num_classes == 100
    images = smooth_images(24, 5)
    gt_class = classifier(images).argmax(dim=1)
    metric = NWayTopKAccuracy(n_way=50, n_trials=50, seed=0)
    metric.update(classifier(images), gt_class, torch.arange(24))
    assert metric.compute().item() == pytest.approx(1.0)
    chance = NWayTopKAccuracy(n_way=50, n_trials=50, seed=0)
    g = torch.Generator().manual_seed(0)
    chance.update(torch.rand(2000, 100, generator=g), torch.randint(0, 100, (2000,), generator=g), torch.arange(2000))
    assert chance.compute().item() == pytest.approx(1 / 50, abs=0.006)
    top5 = NWayTopKAccuracy(n_way=50, top_k=5, n_trials=50, seed=0)
    top5.update(torch.rand(2000, 100, generator=g), torch.randint(0, 100, (2000,), generator=g), torch.arange(2000))
    assert top5.compute().item() == pytest.approx(5 / 50, abs=0.01)


def test_n_way_states_sum_across_processes():
    """Two ranks' states merged as DDP would (sum) give the metric of all images."""
    probs, target = torch.rand(10, 60), torch.randint(0, 60, (10,))
    whole = NWayTopKAccuracy(n_way=10, seed=1)
    whole.update(probs, target, torch.arange(10))
    a, b = NWayTopKAccuracy(n_way=10, seed=1), NWayTopKAccuracy(n_way=10, seed=1)
    a.update(probs[:4], target[:4], torch.arange(4))
    b.update(probs[4:], target[4:], torch.arange(4, 10))
    assert {a._reductions[k].__name__ for k in ("hits", "images")} <= {"dim_zero_sum", "sum"}
    merged = (a.hits + b.hits) / (a.images + b.images)
    assert merged.item() == pytest.approx(whole.compute().item())


def test_weights_files_are_checked(tmp_path, networks):
    import torchvision
    from safetensors.torch import save_file

    wrong = tmp_path / "wrong.safetensors"
    save_file({k: v.contiguous() for k, v in torchvision.models.squeezenet1_1(num_classes=10).state_dict().items()}, str(wrong))
    with pytest.raises(ValueError, match="wrong shape"):
        load_classifier(ClassifierConfig("squeezenet1_1", None, str(wrong), num_classes=100, image_size=64))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_lpips_net(LPIPSConfig(str(tmp_path / "absent.pth")))
    pickled = tmp_path / "pickle.pth"
    torch.save({"net": nn.Linear(2, 2)}, pickled)  # a pickled module, not tensors: never unpickled
    with pytest.raises(ValueError, match="could not be read as a state dict of tensors"):
        load_lpips_net(LPIPSConfig(str(pickled)))


def test_lpips_from_a_torchvision_alexnet_file(tmp_path):
    """The cluster path: a full torchvision AlexNet state dict (.pth) read with weights_only=True."""
    import torchvision

    torch.manual_seed(0)
    alexnet = torchvision.models.alexnet(weights=None)
    path = tmp_path / "alexnet-owt-7be5be79.pth"
    torch.save(alexnet.state_dict(), path)
    net = load_lpips_net(LPIPSConfig(str(path)))
    assert torch.equal(net.net.slice1[0].weight, alexnet.features[0].weight)
    a, b = torch.rand(2, 3, 64, 64) * 2 - 1, torch.rand(2, 3, 64, 64) * 2 - 1
    assert net(a, a).abs().max() < 1e-6 and (net(a, b) > 0).all()


def test_offline_download_error_says_where_to_put_the_file(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(RuntimeError, match="alexnet-owt-7be5be79.pth.*weights_path"):
        load_lpips_net(LPIPSConfig(None))


def test_fid_inception_loads_from_a_local_file(tmp_path):
    """The cluster path: torch-fidelity's Inception-v3 from a local weights file, 2048 features, 1008 logits."""
    from dreamdiffusion.models.tiny_eval_networks import write_random_inception_v3

    path = write_random_inception_v3(tmp_path / "inception.safetensors", seed=0)
    pool, logits = load_inception(InceptionConfig("inception_v3_fidelity", str(path)))
    images = (torch.rand(2, 3, 64, 64) * 255).to(torch.uint8)
    assert pool.num_features == 2048 and pool(images).shape == (2, 2048) and logits(images).shape == (2, 1008)
    assert pool.provenance == logits.provenance == "random"
    from safetensors.torch import load_file

    state = load_file(str(path))
    assert torch.equal(pool.net.fc.weight, state["fc.weight"])


def test_classifier_with_torchvision_weights_name_and_local_file(tmp_path):
    """A torchvision weights name gives preprocessing and class count; the local file gives the weights."""
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.squeezenet1_1(weights=None)
    torch.save(model.state_dict(), tmp_path / "squeezenet1_1-b8a52dc0.pth")
    classifier = load_classifier(ClassifierConfig("squeezenet1_1", "IMAGENET1K_V1", str(tmp_path / "squeezenet1_1-b8a52dc0.pth")))
    assert classifier.num_classes == 1000 and classifier.preprocess.crop_size == [224]
    probs = classifier(torch.rand(2, 3, 64, 64))
    assert probs.shape == (2, 1000) and torch.allclose(probs.sum(dim=1), torch.ones(2))
    with pytest.raises(ValueError, match="are not one of squeezenet1_1's"):
        load_classifier(ClassifierConfig("squeezenet1_1", "SWAG", str(tmp_path / "squeezenet1_1-b8a52dc0.pth")))
    with pytest.raises(ValueError, match="not a torchvision model name"):
        load_classifier(ClassifierConfig("vit_gigantic", None, "x", num_classes=3, image_size=8))


def test_inception_score_matches_torchmetrics_and_ignores_the_order(networks):
    from torchmetrics.image import InceptionScore as TorchmetricsIS

    from dreamdiffusion.metrics import InceptionScore, to_uint8

    _, logits = load_inception(InceptionConfig("tiny", networks["inception"]))
    images = to_uint8(smooth_images(12, 3))
    ours = InceptionScore(logits, splits=1)
    ours.update(images)
    reference = TorchmetricsIS(feature=logits, splits=1)
    reference.update(images)
    assert ours.compute()[0].item() == pytest.approx(reference.compute()[0].item(), rel=1e-5)
    forward, backward = InceptionScore(logits, splits=3), InceptionScore(logits, splits=3)
    forward.update(images, torch.arange(12))
    backward.update(images[6:], torch.arange(6, 12))
    backward.update(images[:6], torch.arange(6))
    assert torch.equal(forward.compute()[0], backward.compute()[0])
    with pytest.raises(RuntimeError, match="at least 3 images"):
        short = InceptionScore(logits, splits=3)
        short.update(images[:2])
        short.compute()


def test_inception_score_splits_mix_classes_whatever_order_the_keys_follow():
    """Images keyed class after class (as a test split sorted by picture is) score like a random order: a split
    of one class would have a peaked marginal and an Inception Score near 1."""
    from dreamdiffusion.metrics import InceptionScore, inception_score_from_logits

    classes, per_class, splits = 5, 40, 5
    labels = torch.arange(classes).repeat_interleave(per_class)
    logits = torch.nn.functional.one_hot(labels, classes).float() * 6.0  # confident, one class per image
    score = InceptionScore(torch.nn.Identity(), splits=splits)
    score.update(logits, torch.arange(len(labels)))
    ordered = inception_score_from_logits(logits, splits)[0].item()  # chunks of one class each
    shuffled = [inception_score_from_logits(logits[torch.randperm(len(labels))], splits)[0].item() for _ in range(20)]
    assert ordered < 1.1
    assert min(shuffled) - 0.3 < score.compute()[0].item() < max(shuffled) + 0.3
    assert score.compute()[0].item() > 4.0


@pytest.mark.parametrize("n_real, n_fake, dim", [(6, 12, 64), (80, 90, 8)])  # fewer images than features, and more
def test_frechet_distance_matches_the_matrix_square_root_formula(n_real, n_fake, dim):
    import numpy as np
    from scipy import linalg

    from dreamdiffusion.metrics import frechet_distance

    g = torch.Generator().manual_seed(0)
    real, fake = torch.randn(n_real, dim, generator=g), torch.randn(n_fake, dim, generator=g) * 1.5 + 0.2
    r, f = real.double().numpy(), fake.double().numpy()
    s1, s2 = np.cov(r, rowvar=False), np.cov(f, rowvar=False)
    expected = ((r.mean(0) - f.mean(0)) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(linalg.sqrtm(s1 @ s2).real)
    assert frechet_distance(real, fake) == pytest.approx(expected, rel=1e-6, abs=1e-6)
    assert frechet_distance(real, real) == pytest.approx(0.0, abs=1e-6)


def test_trial_table_returns_rows_sorted_by_trial_index_whatever_the_update_order():
    from dreamdiffusion.metrics import TrialTable

    table = TrialTable({"score": 1, "embedding": 2})
    table.update(torch.tensor([7, 3]), score=torch.tensor([0.7, 0.3]), embedding=torch.tensor([[7.0, 7], [3, 3]]))
    table.update(torch.tensor([5]), score=torch.tensor([0.5]), embedding=torch.tensor([[5.0, 5]]))
    rows = table.compute()
    assert rows["index"].tolist() == [3, 5, 7]
    assert rows["score"][:, 0].tolist() == pytest.approx([0.3, 0.5, 0.7]) and rows["embedding"][:, 0].tolist() == [3, 5, 7]
    with pytest.raises(ValueError, match="needs exactly the columns"):
        table.update(torch.tensor([1]), score=torch.tensor([0.1]))


def test_random_evaluation_networks_say_so_and_published_files_are_published(networks, tmp_path):
    from dreamdiffusion.models.eval_weights import weights_provenance

    classifier = load_classifier(ClassifierConfig("squeezenet1_1", None, networks["classifier"], num_classes=100, image_size=64))
    pool, logits = load_inception(InceptionConfig("tiny", networks["inception"]))
    lpips = load_lpips_net(LPIPSConfig(networks["lpips"]))
    assert {classifier.provenance, pool.provenance, logits.provenance, lpips.provenance} == {"random"}
    assert weights_provenance(None) == "published"  # the library's own download
    assert weights_provenance(tmp_path / "vit_h_14_swag-80465313.pth") == "published"
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(1)}, str(tmp_path / "trained.safetensors"), metadata={"provenance": "trained on generator pictures"})
    save_file({"w": torch.zeros(1)}, str(tmp_path / "bare.safetensors"))
    assert weights_provenance(tmp_path / "trained.safetensors") == "trained on generator pictures"
    assert weights_provenance(tmp_path / "bare.safetensors") == "unlabelled"
