"""Per-GPU memory of stage 2 on full SD-1.5 at 512 px: counted parameters, measured saved activations.

Nothing is downloaded and nothing is allocated: the real classes (``UNet2DConditionModel``,
``AutoencoderKL``, ``CLIPVisionModelWithProjection``, our ``EEGConditionModel``) are built on PyTorch's
``meta`` device from the published SD-1.5 / CLIP ViT-L/14 configs (written out below), so parameter
counts are exact. Activations are **measured on meta**: the forward pass of the trainable path runs
under ``torch.autograd.graph.saved_tensors_hooks`` and every tensor autograd keeps for the backward is
counted once per storage (parameters excluded). Attention is replaced by a stand-in that keeps what a
fused (flash / memory-efficient) kernel keeps — q, k, v, the output and the log-sum-exp — instead of the
B×heads×N×N probabilities of the math kernel. With gradient checkpointing, the inputs of every
checkpointed unit are kept and one unit's activations live at a time during its recomputation; the
largest unit is counted.

What is **estimated**, not measured: bf16 autocast keeps GroupNorm/softmax outputs in fp32, so the
truth under ``bf16-mixed`` lies between the bf16 and fp32 columns; the transient peak of the frozen
VAE encoder / CLIP forward (no_grad, freed before the UNet runs) is taken as 3× their largest single
activation; allocator fragmentation and the CUDA context (~0.5–1 GB) are not included.

    python benchmarks/finetune_memory.py [--batch-size 25]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
import torch.nn.functional as F

from dreamdiffusion.models.condition import ConditionConfig, EEGConditionModel
from dreamdiffusion.models.mae import preset
from dreamdiffusion.stages.finetune_trainable import cross_attention_parameter_names

# runwayml / stable-diffusion-v1-5 unet/config.json and vae/config.json (the values that shape the nets)
SD15_UNET = dict(
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=768, attention_head_dim=8, norm_num_groups=32, norm_eps=1e-5, act_fn="silu",
    downsample_padding=1, flip_sin_to_cos=True, freq_shift=0, mid_block_scale_factor=1,
)
SD15_VAE = dict(
    in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, block_out_channels=(128, 256, 512, 512),
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    norm_num_groups=32, sample_size=512, act_fn="silu",
)
# openai/clip-vit-large-patch14 vision_config + projection_dim
CLIP_L14 = dict(
    hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16, image_size=224,
    patch_size=14, projection_dim=768, hidden_act="quick_gelu",
)
GB = 1024**3


class FusedAttentionStandIn(torch.autograd.Function):
    """Keeps for the backward what a fused SDPA kernel keeps: q, k, v, output, log-sum-exp (fp32)."""

    @staticmethod
    def forward(ctx, q, k, v):
        out = torch.empty(*q.shape[:-1], v.shape[-1], dtype=q.dtype, device=q.device)
        lse = torch.empty(q.shape[:-1], dtype=torch.float32, device=q.device)
        ctx.save_for_backward(q, k, v, out, lse)
        return out

    @staticmethod
    def backward(ctx, grad):  # never called: the pass runs on meta only to count
        raise RuntimeError("measurement only")


def fused_sdpa(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, **kwargs):
    return FusedAttentionStandIn.apply(q, k, v)


class SavedBytes:
    """Bytes autograd keeps for the backward, once per storage, parameters excluded."""

    def __init__(self, exclude: set[int]) -> None:
        self.exclude, self.storages = exclude, {}
        self.alive = []  # hold every counted tensor so no storage id is reused during the pass

    def pack(self, t):
        storage = t.untyped_storage()
        if storage._cdata not in self.exclude:
            self.storages[storage._cdata] = storage.nbytes()
            self.alive.append(t)
        return t

    @staticmethod
    def unpack(t):
        return t

    @property
    def total(self) -> int:
        return sum(self.storages.values())


def storage_ids(module: torch.nn.Module) -> set[int]:
    return {p.untyped_storage()._cdata for p in module.parameters()}


def count(module: torch.nn.Module, names: list[str] | None = None) -> int:
    params = dict(module.named_parameters())
    return sum(params[n].numel() for n in (names if names is not None else params))


def unet_activations(batch: int, dtype: torch.dtype, checkpointing: bool) -> int:
    """Saved bytes of SD-1.5's UNet forward with only the A set trainable and a condition needing grad."""
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):
        unet = UNet2DConditionModel(**SD15_UNET).to(dtype)
    unet.requires_grad_(False)
    for name in cross_attention_parameter_names(unet):
        unet.get_parameter(name).requires_grad_(True)
    exclude = storage_ids(unet)
    outer = SavedBytes(exclude)
    kept: dict[int, int] = {}
    kept_alive: list[torch.Tensor] = []
    largest_unit = [0]

    def measured_checkpoint(function, *args):
        for a in args:
            if isinstance(a, torch.Tensor):
                kept[a.untyped_storage()._cdata] = a.untyped_storage().nbytes()
                kept_alive.append(a)
        inner = SavedBytes(exclude)
        with torch.autograd.graph.saved_tensors_hooks(inner.pack, inner.unpack):
            out = function(*args)
        largest_unit[0] = max(largest_unit[0], inner.total)
        return out

    if checkpointing:
        unet.enable_gradient_checkpointing(gradient_checkpointing_func=measured_checkpoint)
    unet.train()
    latents = torch.empty(batch, 4, 64, 64, device="meta", dtype=dtype)
    condition = torch.empty(batch, 77, 768, device="meta", dtype=dtype, requires_grad=True)
    t = torch.zeros(batch, dtype=torch.long, device="meta")
    with torch.autograd.graph.saved_tensors_hooks(outer.pack, outer.unpack):
        unet(latents, t, encoder_hidden_states=condition).sample.float().pow(2).mean()
    if not checkpointing:
        return outer.total
    kept_only = {k: v for k, v in kept.items() if k not in outer.storages}
    return outer.total + sum(kept_only.values()) + largest_unit[0]


def encoder_activations(batch: int, dtype: torch.dtype) -> tuple[int, int, int]:
    """(trainable condition-model parameters, of which the encoder, saved bytes of its forward)."""
    with torch.device("meta"):
        model = EEGConditionModel(ConditionConfig(preset("297M"), cross_attention_dim=768, clip_dim=768)).to(dtype)
    model.train()
    meter = SavedBytes(storage_ids(model))
    eeg = torch.empty(batch, 128, 512, device="meta", dtype=dtype)
    with torch.autograd.graph.saved_tensors_hooks(meter.pack, meter.unpack):
        tokens = model.encoder.transform(model.encoder.tokens(eeg))[:, 1:]  # forward() minus its finiteness check
        model.dim_mapper(model.token_mapper(tokens))
        model.clip_embedding(tokens)
    trainable = sum(p.numel() for n, p in model.named_parameters() if n != "null_condition")
    return trainable, count(model.encoder), meter.total


def largest_activation(module: torch.nn.Module, run) -> int:
    """Bytes of the largest tensor any leaf module outputs during ``run()`` (no_grad)."""
    largest = [0]

    def hook(_m, _i, out):
        if isinstance(out, torch.Tensor):
            largest[0] = max(largest[0], out.untyped_storage().nbytes())

    handles = [m.register_forward_hook(hook) for m in module.modules() if not list(m.children())]
    with torch.no_grad():
        run()
    for h in handles:
        h.remove()
    return largest[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-size", type=int, default=25)
    args = parser.parse_args()
    b = args.batch_size
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    F.scaled_dot_product_attention = fused_sdpa  # the stand-in, for counting only
    with torch.device("meta"):
        unet = UNet2DConditionModel(**SD15_UNET)
        vae = AutoencoderKL(**SD15_VAE)
        clip = CLIPVisionModelWithProjection(CLIPVisionConfig(**CLIP_L14))
    a_names = cross_attention_parameter_names(unet)
    n_unet, n_vae, n_clip, n_a = count(unet), count(vae), count(clip), count(unet, a_names)
    n_cond, n_enc, enc_act32 = encoder_activations(b, torch.float32)
    _, _, enc_act16 = encoder_activations(b, torch.bfloat16)
    n_train = n_a + n_cond
    vae_peak = {dt: 3 * largest_activation(vae, lambda dt=dt: vae.to(dt).encode(torch.empty(b, 3, 512, 512, device="meta", dtype=dt)))
                for dt in (torch.float32, torch.bfloat16)}
    clip_peak = {dt: 3 * largest_activation(
        clip, lambda dt=dt: clip.to(dt)(pixel_values=torch.empty(b, 3, 224, 224, device="meta", dtype=dt)))
                 for dt in (torch.float32, torch.bfloat16)}
    unet_act = {(dt, ck): unet_activations(b, dt, ck) for dt in (torch.float32, torch.bfloat16) for ck in (False, True)}

    print(f"Stage 2 on SD-1.5 at 512 px, batch {b} per GPU (AdamW, E+A, fp32 master weights as in bf16-mixed)\n")
    print("parameters (counted on meta from the real configs)")
    print(f"  UNet {n_unet / 1e6:.2f}M, of which A (attn2 + norm2, {len(a_names)} tensors) {n_a / 1e6:.2f}M")
    print(f"  VAE {n_vae / 1e6:.2f}M, CLIP ViT-L/14 image tower + projection {n_clip / 1e6:.2f}M")
    print(f"  EEG condition model {n_cond / 1e6:.2f}M (encoder 297M preset {n_enc / 1e6:.2f}M + mappers + CLIP head)")
    print(f"  trainable E+A: {n_train / 1e6:.2f}M\n")
    weights = 4 * (n_unet + n_vae + n_clip + n_cond)
    grads, adam = 4 * n_train, 8 * n_train
    rows = [
        ("weights, all fp32", weights, weights),
        ("gradients of the trainable set (fp32)", grads, grads),
        ("AdamW exp_avg + exp_avg_sq (fp32)", adam, adam),
    ]
    print(f"{'GiB':48s}{'fp32':>10s}{'bf16':>10s}")
    for label, v32, v16 in rows:
        print(f"{label:48s}{v32 / GB:10.2f}{v16 / GB:10.2f}")
    for ck in (False, True):
        label = f"UNet saved activations, {'with' if ck else 'no'} checkpointing"
        print(f"{label:48s}{unet_act[(torch.float32, ck)] / GB:10.2f}{unet_act[(torch.bfloat16, ck)] / GB:10.2f}")
    print(f"{'EEG encoder saved activations (measured)':48s}{enc_act32 / GB:10.2f}{enc_act16 / GB:10.2f}")
    # with checkpointing the encoder keeps each block's input [B, 129, D] and one block's activations
    cfg = preset("297M")
    enc_ckpt = {n: cfg.depth * b * (cfg.n_tokens + 1) * cfg.embed_dim * n + act / cfg.depth
                for n, act in ((4, enc_act32), (2, enc_act16))}
    print(f"{'EEG encoder, with checkpointing (est.)':48s}{enc_ckpt[4] / GB:10.2f}{enc_ckpt[2] / GB:10.2f}")
    autocast_copies = 2 * (n_unet + n_cond)  # bf16 copies of the weights autocast caches during forward/backward
    print(f"{'autocast bf16 weight copies (est.)':48s}{0.0:10.2f}{autocast_copies / GB:10.2f}")
    print(f"{'VAE encode transient peak (3x largest, est.)':48s}{vae_peak[torch.float32] / GB:10.2f}{vae_peak[torch.bfloat16] / GB:10.2f}")
    print(f"{'CLIP transient peak (3x largest, est.)':48s}{clip_peak[torch.float32] / GB:10.2f}{clip_peak[torch.bfloat16] / GB:10.2f}")
    static = weights + grads + adam
    for ck in (False, True):
        for cached in (False, True):
            towers = {dt: 0 if cached else max(vae_peak[dt], clip_peak[dt]) for dt in (torch.float32, torch.bfloat16)}
            enc = {torch.float32: enc_ckpt[4] if ck else enc_act32, torch.bfloat16: (enc_ckpt[2] if ck else enc_act16) + autocast_copies}
            totals = [static + enc[dt] + max(unet_act[(dt, ck)], towers[dt]) for dt in (torch.float32, torch.bfloat16)]
            label = f"TOTAL {'with' if ck else 'no'} ckpt, {'cached' if cached else 'uncached'} towers"
            print(f"{label:48s}{totals[0] / GB:10.2f}{totals[1] / GB:10.2f}")


if __name__ == "__main__":
    main()
