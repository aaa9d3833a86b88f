"""Masked EEG autoencoder for masked signal modeling (DreamDiffusion, Sec. 3.2).

An EEG window ``x: [B, n_chans, n_times]`` (µV, standardised per channel) is cut into
``n_times / patch_size`` tokens; each token holds ``patch_size`` consecutive samples of **all**
channels (``Conv1d(n_chans, D, kernel=patch_size, stride=patch_size)``). A random ``mask_ratio`` of
the tokens is removed per sample, the encoder sees the rest, a light decoder reconstructs every
token and the loss is the MSE on the removed tokens only.

Stage 2 keeps only :class:`EEGEncoder`; :meth:`EEGEncoder.forward` gives all patch tokens
``[B, n_tokens, D]`` after the final norm, without masking and without the cls token.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import Tensor, nn

# "authors": a zero row for the cls token, patches at positions 0..L-1 (the authors' MAEforEEG, as MAE's
# get_1d_sincos_pos_embed(cls_token=True)); "shifted": the cls token at position 0, patches at 1..L (what
# dreamdiffusion wrote before it followed the authors; kept so that older encoder files keep their meaning).
POSITION_LAYOUTS = ("authors", "shifted")


@dataclass(frozen=True)
class MAEConfig:
    """Shape of the masked EEG autoencoder; everything needed to rebuild it."""

    n_chans: int = 128
    n_times: int = 512
    patch_size: int = 4
    embed_dim: int = 1024
    depth: int = 24
    num_heads: int = 16
    mlp_ratio: float = 4.0
    decoder_embed_dim: int = 512
    decoder_depth: int = 8
    decoder_num_heads: int = 16
    # Where the fixed sine-cosine positions put the cls token and the patches (:func:`position_table`).
    position_layout: str = "authors"

    def __post_init__(self) -> None:
        if self.position_layout not in POSITION_LAYOUTS:
            raise ValueError(f"position_layout={self.position_layout!r}; use one of {', '.join(POSITION_LAYOUTS)}")
        if self.n_times % self.patch_size:
            raise ValueError(
                f"n_times={self.n_times} is not a multiple of patch_size={self.patch_size}; "
                "choose a window length divisible by the patch size"
            )
        for dim, heads, what in (
            (self.embed_dim, self.num_heads, "embed_dim/num_heads"),
            (self.decoder_embed_dim, self.decoder_num_heads, "decoder_embed_dim/decoder_num_heads"),
        ):
            if dim % heads:
                raise ValueError(f"{what}: {dim} is not divisible by {heads}")
        if self.embed_dim % 2 or self.decoder_embed_dim % 2:
            raise ValueError("embed_dim and decoder_embed_dim must be even (sin-cos positions)")

    @property
    def n_tokens(self) -> int:
        return self.n_times // self.patch_size

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> MAEConfig:
        """The config a file recorded. Files written before ``position_layout`` existed used ``"shifted"``."""
        return cls(**{"position_layout": "shifted", **data})


# Table 2 of the paper sweeps the encoder by trainable parameters; each preset's counted encoder
# parameters land within 10% of the paper's figure (tests/unit/test_mae.py checks it).
_PAPER_DECODER = dict(decoder_embed_dim=512, decoder_depth=8, decoder_num_heads=16)
PRESETS: dict[str, MAEConfig] = {
    "tiny": MAEConfig(
        embed_dim=64, depth=2, num_heads=4, mlp_ratio=2.0,
        decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=4,
    ),
    "18.3M": MAEConfig(embed_dim=384, depth=10, num_heads=6, **_PAPER_DECODER),
    "74M": MAEConfig(embed_dim=1024, depth=6, num_heads=16, **_PAPER_DECODER),
    "162M": MAEConfig(embed_dim=1024, depth=13, num_heads=16, **_PAPER_DECODER),
    "297M": MAEConfig(embed_dim=1024, depth=24, num_heads=16, **_PAPER_DECODER),
    "458M": MAEConfig(embed_dim=1280, depth=24, num_heads=16, **_PAPER_DECODER),
    # The encoder of the authors' released generation checkpoint: ViT-Large width and depth, but an MLP as
    # wide as the block (mlp_ratio 1.0), ~152M trainable parameters (not a row of Table 2).
    "152M": MAEConfig(embed_dim=1024, depth=24, num_heads=16, mlp_ratio=1.0, **_PAPER_DECODER),
}
PAPER_PARAMETERS = {"18.3M": 18.3e6, "74M": 74e6, "162M": 162e6, "297M": 297e6, "458M": 458e6}
AUTHORS_PARAMETERS = {"152M": 152e6}


def preset(name: str) -> MAEConfig:
    """The :class:`MAEConfig` of a named preset (``tiny``, ``18.3M``, ``74M``, ``162M``, ``297M``, ``458M``;
    ``152M``: the authors' released checkpoint's encoder, mlp_ratio 1.0)."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown encoder preset {name!r}; choose one of {sorted(PRESETS)}") from None


def position_table(n_tokens: int, dim: int, layout: str = "authors") -> Tensor:
    """Fixed positions of the cls token and ``n_tokens`` patch tokens, ``[1 + n_tokens, dim]`` (row 0: cls)."""
    if layout == "authors":
        return torch.cat([torch.zeros(1, dim), sincos_positions(n_tokens, dim)])
    if layout == "shifted":
        return sincos_positions(n_tokens + 1, dim)
    raise ValueError(f"position layout {layout!r}; use one of {', '.join(POSITION_LAYOUTS)}")


def sincos_positions(n_positions: int, dim: int) -> Tensor:
    """Fixed 1-D sine-cosine position table ``[n_positions, dim]`` (Vaswani et al., 2017)."""
    position = torch.arange(n_positions, dtype=torch.float64)[:, None]
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2))
    angles = position * omega[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1).float()


def attention_kernel(device: torch.device, dtype: torch.dtype) -> str:
    """Which attention implementation runs for ``q, k, v`` on ``device`` in ``dtype``.

    ``"matmul"`` (:func:`matmul_attention`) on CPU in bf16/fp16: PyTorch's fused CPU kernel is slower there
    (forward + backward, head size 32-64, 33-129 tokens, batch 8-64): 1.5-6x on an AVX-512 CPU with bf16 dot
    products and without AMX, 2.8-6.3x on one with AMX (one or two threads). ``"sdpa"``
    (``F.scaled_dot_product_attention``) everywhere else: the fused kernels on GPUs, and on CPU in fp32, where
    the fused kernel is as fast or faster (0.5-1.2x the matmul path's time on the AMX CPU).
    """
    if device.type == "cpu" and dtype in (torch.bfloat16, torch.float16):
        return "matmul"
    return "sdpa"


def matmul_attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """``softmax(q kᵀ / sqrt(d)) v`` as two batched matmuls: ``[B, H, N, d] x3 -> [B, H, N, d]``.

    The softmax kernel accumulates in fp32 whatever the input dtype; only its output is rounded to ``q``'s dtype.
    """
    scores = torch.matmul(q * q.shape[-1] ** -0.5, k.transpose(-2, -1))  # [B, H, N, N]
    return torch.matmul(scores.softmax(dim=-1), v)


class Attention(nn.Module):
    """Multi-head self-attention on ``[B, N, D]``; the kernel is chosen per device and dtype
    (:func:`attention_kernel`)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        if attention_kernel(q.device, q.dtype) == "matmul":
            out = matmul_attention(q, k, v)  # [B, heads, N, D/heads]
        else:
            out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    """Pre-LN transformer block: ``x + attn(norm(x))`` then ``x + mlp(norm(x))``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def check_eeg(x: Tensor, n_chans: int, n_times: int) -> None:
    """Refuse input that is not a finite ``[B, n_chans, n_times]`` batch, saying what to fix."""
    if x.ndim != 3 or x.shape[1] != n_chans or x.shape[2] != n_times:
        raise ValueError(
            f"EEG batch has shape {tuple(x.shape)}, the encoder expects [batch, {n_chans} channels, "
            f"{n_times} samples]; harmonise the channels and window the signal with dreamdiffusion.signal"
        )
    # NaN propagates through min/max and ±Inf becomes one of them, so one aminmax pass decides; it
    # costs a fraction of isfinite(x).all(), which was ~7% of a tiny-preset training step.
    if x.numel() == 0:
        return
    low, high = torch.aminmax(x)
    if not (torch.isfinite(low) and torch.isfinite(high)):
        bad = (~torch.isfinite(x)).flatten(1).any(dim=1).nonzero().flatten().tolist()
        raise ValueError(
            f"EEG batch holds NaN or Inf values (batch items {bad[:8]}). The project's data modules leave such "
            "windows out (ImageNet-EEG: nonfinite_trials; MOABB: when the cache is built), so this input came "
            "from elsewhere: drop its non-finite windows before calling the encoder"
        )


class EEGEncoder(nn.Module):
    """The part of the autoencoder that stage 2 keeps: patch embedding, cls token, blocks, norm."""

    def __init__(self, config: MAEConfig) -> None:
        super().__init__()
        self.config = config
        d = config.embed_dim
        self.patch_embed = nn.Conv1d(config.n_chans, d, kernel_size=config.patch_size, stride=config.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.register_buffer("pos_embed", position_table(config.n_tokens, d, config.position_layout)[None], persistent=False)
        self.blocks = nn.ModuleList(Block(d, config.num_heads, config.mlp_ratio) for _ in range(config.depth))
        self.norm = nn.LayerNorm(d)
        self.gradient_checkpointing = False

    def tokens(self, x: Tensor) -> Tensor:
        """Patch tokens with positions: ``x [B, C, T] -> [B, L, D]`` (no cls)."""
        # contiguous: adding to the transposed view would keep the [B, D, L] memory layout downstream
        return self.patch_embed(x).transpose(1, 2).contiguous() + self.pos_embed[:, 1:]

    def transform(self, tokens: Tensor, with_cls: bool = True) -> Tensor:
        """Prepend cls, run the blocks and the final norm: ``[B, N, D] -> [B, 1 + N, D]``.

        ``with_cls=False``: the blocks see the patch tokens only, ``[B, N, D] -> [B, N, D]`` (the authors'
        stage-2 ``eeg_encoder`` never prepends its cls token).
        """
        x = tokens
        if with_cls:
            cls = (self.cls_token + self.pos_embed[:, :1]).expand(tokens.shape[0], -1, -1)
            x = torch.cat([cls, tokens], dim=1)
        for block in self.blocks:
            if self.gradient_checkpointing and self.training:
                x = torch.utils.checkpoint.checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        return self.norm(x)

    def forward(self, x: Tensor, with_cls: bool = True) -> Tensor:
        """All patch tokens after the final norm, for stage 2: ``x [B, C, T] -> [B, L, D]``.

        ``with_cls``: the cls token takes part in attention and is dropped after the norm (stage 1's view);
        ``False``: attention over the patch tokens only (the authors' released encoder).
        """
        check_eeg(x, self.config.n_chans, self.config.n_times)
        out = self.transform(self.tokens(x), with_cls=with_cls)
        return out[:, 1:] if with_cls else out


class MaskedEEGAutoencoder(nn.Module):
    """Encoder + light decoder trained to reconstruct removed EEG tokens."""

    def __init__(self, config: MAEConfig, normalize_target: bool = False) -> None:
        super().__init__()
        self.config = config
        self.normalize_target = normalize_target
        self.encoder = EEGEncoder(config)
        dd = config.decoder_embed_dim
        self.decoder_embed = nn.Linear(config.embed_dim, dd)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dd))
        self.register_buffer("decoder_pos_embed", position_table(config.n_tokens, dd, config.position_layout)[None], persistent=False)
        self.decoder_blocks = nn.ModuleList(
            Block(dd, config.decoder_num_heads, config.mlp_ratio) for _ in range(config.decoder_depth)
        )
        self.decoder_norm = nn.LayerNorm(dd)
        self.decoder_pred = nn.Linear(dd, config.patch_size * config.n_chans)
        self._init_weights()

    def _init_weights(self) -> None:
        w = self.encoder.patch_embed.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.normal_(self.encoder.cls_token, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def encode(self, x: Tensor) -> Tensor:
        """All patch tokens, unmasked, without cls: ``x [B, C, T] -> [B, L, D]``."""
        return self.encoder(x)

    def patchify(self, x: Tensor) -> Tensor:
        """``x [B, C, T] -> [B, L, C * p]``: token ``l`` holds samples ``l*p .. l*p+p-1`` of all channels."""
        b, c, t = x.shape
        p = self.config.patch_size
        return x.view(b, c, t // p, p).permute(0, 2, 1, 3).reshape(b, t // p, c * p)

    def unpatchify(self, tokens: Tensor) -> Tensor:
        """Inverse of :meth:`patchify`: ``[B, L, C * p] -> [B, C, T]``."""
        b, n, _ = tokens.shape
        c, p = self.config.n_chans, self.config.patch_size
        return tokens.view(b, n, c, p).permute(0, 2, 1, 3).reshape(b, c, n * p)

    @staticmethod
    def random_masking(tokens: Tensor, mask_ratio: float) -> tuple[Tensor, Tensor, Tensor]:
        """Keep a random ``1 - mask_ratio`` of tokens per sample.

        ``tokens [B, L, D] -> kept [B, L_keep, D], mask [B, L] (1 is removed), ids_restore [B, L]``.
        """
        b, n, d = tokens.shape
        n_keep = int(n * (1 - mask_ratio))
        noise = torch.rand(b, n, device=tokens.device)
        ids_shuffle = torch.argsort(noise, dim=1)
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        ids_keep = ids_shuffle[:, :n_keep]
        kept = torch.gather(tokens, 1, ids_keep[..., None].expand(-1, -1, d))
        mask = torch.ones(b, n, device=tokens.device)
        mask[:, :n_keep] = 0
        return kept, torch.gather(mask, 1, ids_restore), ids_restore

    def forward_encoder(self, x: Tensor, mask_ratio: float) -> tuple[Tensor, Tensor, Tensor]:
        """``x [B, C, T] -> latent [B, 1 + L_keep, D], mask [B, L], ids_restore [B, L]``."""
        check_eeg(x, self.config.n_chans, self.config.n_times)
        kept, mask, ids_restore = self.random_masking(self.encoder.tokens(x), mask_ratio)
        return self.encoder.transform(kept), mask, ids_restore

    def forward_decoder(self, latent: Tensor, ids_restore: Tensor) -> Tensor:
        """``latent [B, 1 + L_keep, D] -> prediction [B, L, C * p]`` for every token."""
        x = self.decoder_embed(latent)
        b, n_visible, dd = x.shape
        n = ids_restore.shape[1]
        fill = self.mask_token.expand(b, n + 1 - n_visible, -1)
        tokens = torch.cat([x[:, 1:], fill], dim=1)
        tokens = torch.gather(tokens, 1, ids_restore[..., None].expand(-1, -1, dd))
        x = torch.cat([x[:, :1], tokens], dim=1) + self.decoder_pos_embed
        for block in self.decoder_blocks:
            x = block(x)
        return self.decoder_pred(self.decoder_norm(x[:, 1:]))  # no prediction for cls

    def forward_loss(self, x: Tensor, pred: Tensor, mask: Tensor) -> Tensor:
        """MSE on removed tokens only: ``x [B, C, T], pred [B, L, C * p], mask [B, L] -> scalar``."""
        target = self.patchify(x)
        if self.normalize_target:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1e-6).sqrt()
        # one fused kernel each way; the same value and gradient as (pred - target).pow(2), in half the time
        per_token = F.mse_loss(pred.float(), target.float(), reduction="none").mean(dim=-1)
        return (per_token * mask).sum() / mask.sum().clamp(min=1)

    def forward(self, x: Tensor, mask_ratio: float = 0.75) -> tuple[Tensor, Tensor, Tensor]:
        """``x [B, C, T] -> (loss, prediction [B, L, C * p], mask [B, L])``."""
        if not 0.0 <= mask_ratio < 1.0:
            raise ValueError(f"mask_ratio={mask_ratio} must lie in [0, 1)")
        latent, mask, ids_restore = self.forward_encoder(x, mask_ratio)
        pred = self.forward_decoder(latent, ids_restore)
        return self.forward_loss(x, pred, mask), pred, mask


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters (position tables are fixed buffers, not counted)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def flops_per_window(config: MAEConfig, mask_ratio: float) -> float:
    """Forward FLOPs of one masked window: matmuls, convolution and attention (q @ kᵀ, attn @ v).

    Norms, activations, softmax and the loss are left out (< 1% for every preset); x3 gives forward +
    backward. ``tests/unit/test_mae.py`` checks it against ``torch.utils.flop_counter.FlopCounterMode``.
    """

    def stack(n: int, d: int, depth: int) -> float:
        hidden = config.mlp_ratio * d
        per_block = 2 * n * (3 * d * d + d * d + 2 * d * hidden) + 2 * 2 * n * n * d
        return depth * per_block

    n_keep = int(config.n_tokens * (1 - mask_ratio)) + 1
    embed = 2 * config.n_tokens * config.n_chans * config.patch_size * config.embed_dim
    encoder = stack(n_keep, config.embed_dim, config.depth)
    dd = config.decoder_embed_dim
    decoder = 2 * n_keep * config.embed_dim * dd + stack(config.n_tokens + 1, dd, config.decoder_depth)
    head = 2 * config.n_tokens * dd * config.patch_size * config.n_chans
    return float(embed + encoder + decoder + head)


__all__ = [
    "MAEConfig",
    "PRESETS",
    "PAPER_PARAMETERS",
    "AUTHORS_PARAMETERS",
    "preset",
    "EEGEncoder",
    "MaskedEEGAutoencoder",
    "count_parameters",
    "flops_per_window",
    "check_eeg",
    "POSITION_LAYOUTS",
    "position_table",
    "sincos_positions",
    "attention_kernel",
    "matmul_attention",
]
