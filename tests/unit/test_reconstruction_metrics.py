"""The MindEye reconstruction suite, zero-shot retrieval and the feature networks, on hand-checked examples."""

import numpy as np
import pytest
import torch
import torchvision
from safetensors.torch import save_file

from dreamdiffusion.models.feature_nets import FeatureNetConfig, load_feature_net
from dreamdiffusion.reconstruction_metrics import (
    CorrelationDistance,
    GreySSIM,
    PixCorr,
    TwoWayIdentification,
    two_way_identification,
)
from dreamdiffusion.zero_shot import k_way_scores, top_k_hits, zero_shot_retrieval


def test_two_way_on_a_hand_computed_3x3_example():
    g0, g1, g2 = [1.0, 0.0, -1.0], [-1.0, 0.0, 1.0], [1.0, -2.0, 1.0]  # corr(g0, g1) = -1, corr(g0, g2) = corr(g1, g2) = 0
    gt = torch.tensor([g0, g1, g2])
    rec = torch.tensor([g0, g0, g2])
    # rec0 = g0: own 1 > -1 and 0 -> 1; rec1 = g0: own corr(g0, g1) = -1, others 1 and 0 are not below -> 0; rec2 -> 1
    assert two_way_identification(gt, rec).tolist() == [1.0, 0.0, 1.0]


def test_two_way_matches_the_numpy_corrcoef_formula():
    rng = np.random.default_rng(0)
    gt, rec = rng.standard_normal((6, 9)), rng.standard_normal((6, 9))
    n = len(gt)
    r = np.corrcoef(gt, rec)[:n, n:]  # r[i, j] = corr(gt_i, rec_j)
    expected = (r < np.diag(r)[None, :]).sum(axis=0) / (n - 1)
    np.testing.assert_allclose(two_way_identification(torch.tensor(gt), torch.tensor(rec)).numpy(), expected)


def images(n, seed=0, size=16):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_pixcorr_and_ssim_of_identical_sets_are_one_and_per_trial_sorted():
    gt = images(4)
    for metric in (PixCorr(), GreySSIM()):
        metric.update(gt[2:].unsqueeze(1), gt[2:], torch.tensor([7, 3]))
        metric.update(gt[:2].unsqueeze(1), gt[:2], torch.tensor([5, 1]))
        index, values = metric.compute()
        assert index.tolist() == [1, 3, 5, 7]
        torch.testing.assert_close(values, torch.ones(4, dtype=torch.float64))
    other = PixCorr()
    other.update(images(4, seed=1).unsqueeze(1), gt, torch.arange(4))
    assert other.compute()[1].abs().max() < 0.2  # unrelated noise pictures


def test_suite_metrics_average_a_trials_samples():
    gt = images(3)
    noise = images(3, seed=5)
    metric = PixCorr()
    metric.update(torch.stack([gt, noise], dim=1), gt, torch.arange(3))
    _, values = metric.compute()
    direct = PixCorr()
    direct.update(noise.unsqueeze(1), gt, torch.arange(3))
    torch.testing.assert_close(values, (1 + direct.compute()[1]) / 2)


def test_feature_metrics_on_a_network():
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 8))
    gt = images(5)
    two_way, distance = TwoWayIdentification(net), CorrelationDistance(net)
    for metric in (two_way, distance):
        metric.update(gt.unsqueeze(1), gt, torch.arange(5))
    assert two_way.compute()[1].tolist() == [1.0] * 5
    torch.testing.assert_close(distance.compute()[1], torch.zeros(5, dtype=torch.float64), atol=1e-6, rtol=0)


# -------------------------------------------------------------------------------------------- retrieval


def test_top_k_and_k_way_are_exact_and_seeded():
    sim = torch.tensor([[0.9, 0.1, 0.5], [0.9, 0.1, 0.5], [0.2, 0.3, 0.1]], dtype=torch.float64)
    own = torch.tensor([0, 2, 2])
    assert top_k_hits(sim, own, 1).tolist() == [1.0, 0.0, 0.0]
    assert top_k_hits(sim, own, 2).tolist() == [1.0, 1.0, 0.0]
    index = torch.tensor([10, 11, 12])
    # trial 1's own picture (0.5) beats picture 1 (0.1) but not 0 (0.9): in 2-way, wins exactly the draws of picture 1
    scores = k_way_scores(sim, own, index, 2, 200, seed=0)
    assert scores[0] == 1.0 and scores[2] == 0.0 and 0.3 < scores[1] < 0.7
    assert torch.equal(scores, k_way_scores(sim, own, index, 2, 200, seed=0))
    assert not torch.equal(scores, k_way_scores(sim, own, index, 2, 200, seed=1))


def test_zero_shot_retrieval_on_a_gallery_of_distinct_pictures():
    targets = torch.eye(4, 6, dtype=torch.float64)
    names = ["a", "b", "c", "d", "a", "b"]  # two trials per picture for a and b: the gallery has 4 pictures
    targets = targets[[0, 1, 2, 3, 0, 1]]
    predicted = targets.clone()
    predicted[5] = targets[2]  # trial 5 (picture b) points at c
    values, chance, pictures = zero_shot_retrieval(predicted, targets, names, torch.arange(6), [1, 5], [2, 4, 10], 20, 0)
    assert pictures == 4 and values["top1"].tolist() == [1, 1, 1, 1, 1, 0]
    assert chance == {"top1": 0.25, "top5": 1.0, "2way": 0.5, "4way": 0.25} and "10way" not in values


# ------------------------------------------------------------------------------------------ networks


def save_random(module, path, prefix=""):
    save_file({prefix + k: v.contiguous() for k, v in module.state_dict().items()}, str(path), metadata={"provenance": "random"})
    return str(path)


def test_torchvision_network_cut_at_a_layer_loads_from_a_file(tmp_path):
    torch.manual_seed(0)
    alexnet = torchvision.models.alexnet(weights=None)
    path = save_random(alexnet, tmp_path / "alexnet.safetensors")
    net = load_feature_net(FeatureNetConfig("alexnet", "features.4", weights=None, weights_path=path, image_size=64))
    x = images(2, size=40)
    resized = torch.nn.functional.interpolate(x, size=(64, 64), mode="bilinear", antialias=True)
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = alexnet.eval().features[:5]((resized - mean) / std)  # features.4 is the second ReLU
    torch.testing.assert_close(net(x), expected.flatten(1))
    assert net.provenance == "random"


def test_swav_style_file_prefix_and_training_heads(tmp_path):
    torch.manual_seed(0)
    resnet = torchvision.models.resnet18(weights=None)
    state = {f"module.{k}": v for k, v in resnet.state_dict().items() if not k.startswith("fc.")}
    state["module.projection_head.0.weight"] = torch.zeros(4, 512)
    state["module.prototypes.weight"] = torch.zeros(3, 4)
    save_file(state, str(tmp_path / "swav.safetensors"))
    config = FeatureNetConfig("resnet18", "avgpool", weights=None, weights_path=str(tmp_path / "swav.safetensors"),
                              image_size=32, strip_prefix="module.", ignore_prefixes=["projection_head.", "prototypes."])
    assert load_feature_net(config)(images(2)).shape == (2, 512)
    with pytest.raises(ValueError, match="projection_head"):
        load_feature_net(FeatureNetConfig(**{**config.to_dict(), "ignore_prefixes": []}))
    del state["module.layer4.1.bn2.weight"]
    save_file(state, str(tmp_path / "broken.safetensors"))
    with pytest.raises(Exception, match="layer4.1.bn2.weight"):
        load_feature_net(FeatureNetConfig(**{**config.to_dict(), "weights_path": str(tmp_path / "broken.safetensors")}))


def test_feature_net_errors_name_the_fix():
    with pytest.raises(ValueError, match="not a torchvision model"):
        load_feature_net(FeatureNetConfig("alexnet9", "x", weights=None, weights_path="x"))
    with pytest.raises(ValueError, match="layer 'nope' is not a node"):
        load_feature_net(FeatureNetConfig("alexnet", "nope", weights=None, weights_path="x"))


def test_fetch_suite_checks_torchvision_hashes_and_fetches_once(cli, capsys, tmp_path, monkeypatch):
    calls = []

    def fake_download(url, dst, hash_prefix=None, progress=True):  # no network in tests
        calls.append((url.rsplit("/", 1)[-1], hash_prefix))
        with open(dst, "wb") as f:
            f.write(b"weights")

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    assert cli("weights", "fetch-suite", "--out", str(tmp_path)) == 0
    assert ("efficientnet_b1_rwightman-bac287d4.pth", "bac287d4") in calls
    assert ("swav_800ep_pretrain.pth.tar", None) in calls and len(calls) == 4  # SwAV's file name carries no hash
    assert str(tmp_path / "swav_800ep_pretrain.pth.tar") in capsys.readouterr().out
    assert cli("weights", "fetch-suite", "--out", str(tmp_path)) == 0 and len(calls) == 4


def test_states_gathered_from_processes_give_the_figures_of_one_process():
    """What a DDP sync does (``cat`` of the rows, ``max`` of the row shape), including a process that scored no trial."""
    import warnings

    net = torch.nn.Flatten()
    gt, rec = images(5), images(5, seed=3).unsqueeze(1)
    whole, first, second, idle = (TwoWayIdentification(net) for _ in range(4))
    whole.update(rec, gt, torch.arange(5))
    first.update(rec[3:], gt[3:], torch.tensor([3, 4]))
    second.update(rec[:3], gt[:3], torch.tensor([0, 1, 2]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # compute() on a metric that only received merged states
        idle.merge_state(first)
        idle.merge_state(second)
        index, values = idle.compute()
    assert index.tolist() == [0, 1, 2, 3, 4]
    torch.testing.assert_close(values, whole.compute()[1])
