"""Stage 2 (EEGSDFinetuneModule) on tiny real models and hand-made paired batches."""

import re

import pytest
import torch
from finetune_helpers import build_weights, paired_batch

from dreamdiffusion.metrics import retrieval_top1
from dreamdiffusion.models.encoder_file import save_encoder
from dreamdiffusion.models.mae import MaskedEEGAutoencoder, preset
from dreamdiffusion.pipeline import DreamDiffusionPipeline
from dreamdiffusion.stages.finetune import EEGSDFinetuneModule, clip_loss
from dreamdiffusion.stages.finetune_trainable import cross_attention_parameter_names

# The A set written out independently of the code under test: parameters of a transformer block's
# attn2 and of the norm2 right before it, and nothing from ResNet blocks (whose GroupNorm is also 'norm2').
A_PATTERN = re.compile(r"^unet\..*\.transformer_blocks\.\d+\.(attn2|norm2)\.")


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return build_weights(tmp_path_factory.mktemp("stage2"))


def make(weights, **kwargs) -> EEGSDFinetuneModule:
    torch.manual_seed(0)
    args = dict(weights, encoder_preset="tiny", val_sample_every_n_epochs=0, local_files_only=True)
    args.update(kwargs)
    return EEGSDFinetuneModule(**args)


def train_steps(module: EEGSDFinetuneModule, batch: dict, steps: int) -> set[str]:
    """A few optimiser steps by hand; returns the names of the parameters that received a gradient."""
    module.train()
    optimizer = module.configure_optimizers()
    got_grad: set[str] = set()
    for _ in range(steps):
        optimizer.zero_grad()
        module.losses(batch)["loss"].backward()
        got_grad |= {n for n, p in module.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
        optimizer.step()
    return got_grad


def expected_trainable(module, train_encoder, train_cross_attention, sd=True, clip=True, dropout=False) -> set[str]:
    names = {n for n, _ in module.named_parameters()}
    out = set()
    for n in names:
        if train_encoder and n.startswith("condition_model.encoder."):
            out.add(n)
        if sd and n.startswith(("condition_model.token_mapper.", "condition_model.dim_mapper.")):
            out.add(n)
        if clip and n.startswith(("condition_model.clip_token.", "condition_model.clip_proj.")):
            out.add(n)
        if train_cross_attention and A_PATTERN.match(n):
            out.add(n)
        if dropout and n == "condition_model.null_condition":
            out.add(n)
    return out


@pytest.mark.parametrize(
    "train_encoder,train_cross_attention", [(True, True), (True, False), (False, True)], ids=["E+A", "E", "A"]
)
def test_exactly_the_configured_parameters_learn_and_the_rest_stays_bit_identical(weights, train_encoder, train_cross_attention):
    module = make(weights, train_encoder=train_encoder, train_cross_attention=train_cross_attention, lr=1e-3)
    expected = expected_trainable(module, train_encoder, train_cross_attention)
    assert set(module.trainable_names) == expected
    if train_cross_attention:  # the A set is not empty and holds no ResNet norm
        a_set = {n for n in expected if n.startswith("unet.")}
        assert a_set and not any(".resnets." in n for n in a_set)
        assert any(n.endswith("norm2.weight") for n in a_set) and any(".attn2.to_k." in n for n in a_set)
    before = {k: v.detach().clone() for k, v in module.state_dict().items()}
    got_grad = train_steps(module, paired_batch(2), steps=2)
    assert got_grad == expected
    after = module.state_dict()
    for key, value in before.items():
        if key in expected:
            assert not torch.equal(value, after[key]), f"{key} should have changed"
        else:
            assert torch.equal(value, after[key]), f"{key} is frozen but changed"


def test_frozen_parts_stay_in_eval_mode_when_lightning_calls_train(weights):
    module = make(weights, train_encoder=False)
    module.train()
    assert not module.vae.training and not module.clip.training
    assert not module.condition_model.encoder.training and module.condition_model.token_mapper.training
    assert not module.unet.training and not module.unet.down_blocks[0].resnets[0].training
    assert module.unet.get_submodule("down_blocks.0.attentions.0.transformer_blocks.0.attn2").training
    module.eval()
    assert not module.unet.get_submodule("down_blocks.0.attentions.0.transformer_blocks.0.attn2").training


def test_cross_attention_selection_skips_resnet_norm2(weights):
    module = make(weights)
    names = cross_attention_parameter_names(module.unet)
    resnet_norm2 = [n for n, _ in module.unet.named_parameters() if ".resnets." in n and ".norm2." in n]
    assert resnet_norm2, "the tiny UNet should have ResNet norm2 layers for this test to mean anything"
    assert not set(names) & set(resnet_norm2)
    assert all(A_PATTERN.match("unet." + n) for n in names)


def test_clip_loss_is_equation_3_on_known_vectors():
    predicted = torch.tensor([[1.0, 0.0], [1.0, 1.0], [3.0, 0.0], [0.0, 2.0]])
    target = torch.tensor([[0.0, 5.0], [2.0, 2.0], [-1.0, 0.0], [1.0, 1.0]])
    # 1 - cos: orthogonal 1, parallel 0, opposite 2, 45 degrees 1 - 1/sqrt(2)
    expected = torch.tensor([1.0, 0.0, 2.0, 1 - 2**-0.5]).mean()
    assert torch.allclose(clip_loss(predicted, target), expected, atol=1e-6)


def test_retrieval_top1_counts_own_image_as_best_match():
    gallery = torch.eye(3)
    ids = torch.tensor([7, 8, 9])
    predicted = torch.tensor([[1.0, 0.1, 0.0], [0.0, 0.0, 1.0], [0.0, 0.2, 0.9]])  # hit, miss, hit
    assert retrieval_top1(predicted, gallery, ids, ids).item() == pytest.approx(2 / 3)


def test_sd_and_clip_losses_fall_on_fixed_pairs(weights):
    module = make(weights, lr=2e-3)
    batch = paired_batch(4, n_images=2)

    def evaluate():
        module.eval()
        with torch.no_grad():
            out = module.losses(batch, generator=torch.Generator().manual_seed(1), train=False)
        return out["loss_sd"].item(), out["loss_clip"].item()

    sd0, clip0 = evaluate()
    train_steps(module, batch, steps=25)
    sd1, clip1 = evaluate()
    assert sd1 < sd0 and clip1 < 0.5 * clip0, (sd0, sd1, clip0, clip1)


def test_validation_loss_is_reproducible(weights):
    module = make(weights).eval()
    batch = paired_batch(2)
    with torch.no_grad():
        a = module.losses(batch, generator=torch.Generator().manual_seed(3), train=False)["loss"]
        b = module.losses(batch, generator=torch.Generator().manual_seed(3), train=False)["loss"]
    assert torch.equal(a, b)


def test_clip_only_and_no_clip_train_only_what_their_loss_reaches(weights):
    clip_only = make(weights, sd_loss_weight=0.0, train_cross_attention=False)
    expected = expected_trainable(clip_only, True, False, sd=False)
    assert set(clip_only.trainable_names) == expected
    assert train_steps(clip_only, paired_batch(2), steps=1) == expected
    no_clip = make(weights, clip_loss_weight=0.0)
    assert set(no_clip.trainable_names) == expected_trainable(no_clip, True, True, clip=False)


def test_condition_dropout_trains_the_null_condition(weights):
    module = make(weights, condition_dropout=0.5)
    assert "condition_model.null_condition" in module.trainable_names
    torch.manual_seed(1)
    got = train_steps(module, paired_batch(8), steps=1)
    assert "condition_model.null_condition" in got


def test_time_condition_uses_the_unet_time_embedding_size(weights):
    module = make(weights, time_condition=True)
    assert module.unet.config.class_embed_type == "identity"
    dim = module.unet.time_embedding.linear_2.out_features
    assert module.condition_model.time_mapper.out_features == dim
    got = train_steps(module, paired_batch(2), steps=1)
    assert "condition_model.time_mapper.weight" in got


def test_cached_latents_and_clip_embeds_replace_the_towers(weights):
    module = make(weights, use_cached_latents=True, use_cached_clip_embeds=True)
    assert module.clip is None and module.condition_model.clip_proj.out_features == 32
    batch = paired_batch(2)
    batch.pop("clip_pixels")
    batch["clip_embeds"] = torch.randn(2, 32)
    batch["latent_mean"], batch["latent_std"] = torch.randn(2, 4, 8, 8), torch.full((2, 4, 8, 8), 0.1)
    batch["image"] = torch.full_like(batch["image"], float("nan"))  # the VAE must not run
    out = module.losses(batch)
    assert torch.isfinite(out["loss"])
    del batch["latent_std"]
    with pytest.raises(KeyError, match="data.init_args.cache_latents: true"):
        module.losses(batch)


def test_wrong_encoder_preset_is_refused_with_both_shapes(weights):
    with pytest.raises(ValueError, match="does not match the configured architecture.*embed_dim=64"):
        make(weights, encoder_preset="18.3M")


def test_missing_stage1_folder_says_run_stage1(weights, tmp_path):
    with pytest.raises(FileNotFoundError, match="Run stage 1 first"):
        make(weights, encoder_dir=str(tmp_path / "nothing"))


def test_no_pretraining_starts_from_a_fresh_encoder(weights):
    module = make(weights, encoder_dir=None)
    loaded = make(weights)
    a = module.condition_model.encoder.state_dict()
    b = loaded.condition_model.encoder.state_dict()
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_bad_options_are_refused(weights):
    with pytest.raises(ValueError, match="sd_loss_weight=0.0 and model.clip_loss_weight=0.0"):
        make(weights, sd_loss_weight=0.0, clip_loss_weight=0.0)
    with pytest.raises(ValueError, match="For the 'CLIP only' row set train_cross_attention: false"):
        make(weights, sd_loss_weight=0.0)
    with pytest.raises(ValueError, match="both false"):
        make(weights, train_encoder=False, train_cross_attention=False)


def test_checkpoint_leaves_out_frozen_towers_and_loads_back_strictly(weights, tmp_path):
    module = make(weights, lr=1e-3)
    train_steps(module, paired_batch(2), steps=1)
    checkpoint = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(checkpoint)
    kept = set(checkpoint["state_dict"])
    assert not any(k.startswith(("vae.", "clip.")) for k in kept)
    assert {k for k in kept if k.startswith("unet.")} == {k for k in module.trainable_names if k.startswith("unet.")}
    assert all(k.startswith("condition_model.") for k in kept if not k.startswith("unet."))
    torch.save(checkpoint, tmp_path / "x.ckpt")
    fresh = make(weights)
    fresh.load_trainable_from_checkpoint(tmp_path / "x.ckpt")
    for key, value in module.state_dict().items():
        assert torch.equal(value, fresh.state_dict()[key]), key


def test_export_loads_back_and_gives_the_same_unet_output(weights, tmp_path):
    module = make(weights, lr=1e-3)
    train_steps(module, paired_batch(2), steps=1)
    module.eval()
    module.export_pipeline(tmp_path / "pipeline", metrics={"val/loss": 0.25})
    pipe = DreamDiffusionPipeline.from_pretrained(tmp_path / "pipeline")
    # the default sampler, DPM-Solver++, on the training noise schedule
    assert type(pipe.scheduler).__name__ == "DPMSolverMultistepScheduler" and pipe.scheduler.config.algorithm_type == "dpmsolver++"
    assert pipe.scheduler.config.beta_schedule == module.noise_scheduler.config.beta_schedule
    card = (tmp_path / "pipeline" / "README.md").read_text()
    assert "| val/loss | 0.25 |" in card and "preset `tiny`" in card
    eeg, latents, t = torch.randn(2, 128, 512), torch.randn(2, 4, 8, 8), torch.tensor([10, 500])
    with torch.no_grad():
        condition = module.condition_model(eeg)
        expected = module.unet(latents, t, encoder_hidden_states=condition.hidden_states).sample
    got = pipe.predict_noise(latents, t, pipe.encode_eeg(eeg))
    assert torch.equal(got, expected)


def test_exported_folder_missing_a_part_is_a_clear_error(weights, tmp_path):
    import shutil

    make(weights).export_pipeline(tmp_path / "pipeline")
    shutil.rmtree(tmp_path / "pipeline" / "condition_model")
    with pytest.raises(FileNotFoundError, match=r"incomplete: missing condition_model \(condition_model/config.json\)"):
        DreamDiffusionPipeline.from_pretrained(tmp_path / "pipeline")


def test_encoder_of_another_preset_from_stage1_file(tmp_path, weights):
    save_encoder(MaskedEEGAutoencoder(preset("tiny")).encoder, tmp_path, preset="tiny")
    with pytest.raises(ValueError, match="preset 'tiny'"):
        make(weights, encoder_dir=str(tmp_path), encoder_preset="74M")


def test_validation_grid_pairs_ground_truth_with_samples(weights):
    module = make(weights, val_num_inference_steps=2).eval()
    batch = paired_batch(2)
    grid = module.sample_grid(batch["eeg"], batch["image"])
    # 2 rows (one per EEG) x 2 columns (ground truth | sample) of 64 px tiles with 2 px padding
    assert grid.shape == (3, 2 * 66 + 2, 2 * 66 + 2)
    assert 0 <= grid.min() and grid.max() <= 1
    truth_tile = grid[:, 2:66, 2:66]
    assert torch.allclose(truth_tile, ((batch["image"][0] + 1) / 2).clamp(0, 1), atol=1e-6)


def test_validation_sampler_by_diffusers_class_name(weights):
    module = make(weights, val_num_inference_steps=2).eval()  # the default: DPM-Solver++
    batch = paired_batch(1)
    ddim = make(weights, val_num_inference_steps=2, val_sampler="DDIMScheduler").eval()
    ddim.load_state_dict(module.state_dict())
    dpm_grid, ddim_grid = module.sample_grid(batch["eeg"], batch["image"]), ddim.sample_grid(batch["eeg"], batch["image"])
    assert dpm_grid.shape == ddim_grid.shape and (dpm_grid - ddim_grid).abs().max() > 1e-4
    with pytest.raises(ValueError, match="unknown sampler 'dpm'"):
        make(weights, val_sampler="dpm")


def test_export_with_time_condition_keeps_the_identity_class_embedding(weights, tmp_path):
    module = make(weights, time_condition=True, lr=1e-3)
    train_steps(module, paired_batch(2), steps=1)
    module.eval().export_pipeline(tmp_path / "pipeline")
    pipe = DreamDiffusionPipeline.from_pretrained(tmp_path / "pipeline")
    assert pipe.unet.config.class_embed_type == "identity"
    eeg, latents, t = torch.randn(2, 128, 512), torch.randn(2, 4, 8, 8), torch.tensor([3, 700])
    with torch.no_grad():
        condition = module.condition_model(eeg)
        expected = module.unet(latents, t, encoder_hidden_states=condition.hidden_states, class_labels=condition.time_vector).sample
    assert torch.equal(pipe.predict_noise(latents, t, pipe.encode_eeg(eeg)), expected)


def test_gradient_checkpointing_gives_the_same_gradients(weights):
    batch = paired_batch(2)
    grads = []
    for checkpointing in (False, True):
        module = make(weights, gradient_checkpointing=checkpointing).train()
        torch.manual_seed(5)
        module.losses(batch)["loss"].backward()
        grads.append({n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        assert torch.allclose(grads[0][name], grads[1][name], atol=1e-5, rtol=1e-4), name


def test_authors_time_condition_and_mapper_are_stage_2_options(weights):
    module = make(weights, time_condition="condition", token_mapper_hidden=64, encoder_cls_token=False)
    config = module.condition_model.condition_config
    assert (config.time_mapper_input, config.token_mapper_hidden, config.encoder_cls_token) == ("condition", 64, False)
    assert module.unet.config.class_embed_type == "identity"
    assert any(n.startswith("condition_model.time_mapper.0.") for n in module.trainable_names)
    condition = module.encode_eeg(torch.randn(2, 128, 512))
    assert condition.time_vector.shape == (2, module.unet.time_embedding.linear_2.out_features)
    with pytest.raises(ValueError, match="model.time_condition='pooled'; choose false, true"):
        make(weights, time_condition="pooled")


@pytest.mark.parametrize("encoder_lr", [None, 1e-4])
def test_encoder_lr_applies_to_the_encoder_weights_only(weights, encoder_lr):
    module = make(weights, lr=1e-3, encoder_lr=encoder_lr)
    optimizer = module.configure_optimizers()
    rate = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    encoder = {id(p) for p in module.condition_model.encoder.parameters()}
    trainable = {id(p) for p in module.parameters() if p.requires_grad}
    assert set(rate) == trainable and encoder <= trainable  # every trainable weight once, nothing frozen
    assert {rate[i] for i in encoder} == {1e-3 if encoder_lr is None else encoder_lr}
    assert {rate[i] for i in trainable - encoder} == {1e-3}


def test_a_frozen_encoder_leaves_no_encoder_group(weights):
    module = make(weights, lr=1e-3, encoder_lr=1e-4, train_encoder=False)
    groups = module.configure_optimizers().param_groups
    assert len(groups) == 1 and {g["lr"] for g in groups} == {1e-3}


@pytest.mark.parametrize("key,value", [("encoder_lr", 0.0), ("encoder_lr", -1e-4), ("lr", 0.0)])
def test_a_learning_rate_that_is_not_positive_is_refused_by_name(weights, key, value):
    with pytest.raises(ValueError, match=rf"model\.{key}={value} must be > 0"):
        make(weights, **{key: value})
