"""Stage-1 training-step throughput: our masked EEG autoencoder against a naive-attention reference.

A training step is forward (``mask_ratio`` 0.75) + backward + AdamW step on a ``[B, 128, 512]`` batch.
The reference (:class:`ReferenceMAE`, below) is a plain, independent implementation of the same
architecture in the authors' style: a timm ``Block`` whose attention is written out
(``softmax(q @ kᵀ * scale)`` in fp32, ``@ v``). It is loaded with our model's weights and must give
the same loss on the same input and mask before anything is timed.

Four contenders per preset are timed in interleaved rounds (ours/reference × fp32/bf16 autocast,
order reversed every other round), together with a large fp32 and bf16 matmul, and the medians are
compared. Achieved GFLOP/s = 3 × ``flops_per_window`` × windows/s (forward + backward ≈ 3 × forward).
On a shared machine only the ratios mean something; the absolute times are printed for context.

Run from the repository root (the script puts its own checkout first on ``sys.path``)::

    python benchmarks/pretrain_step.py                       # tiny and 18.3M, ~4 min on 2 CPU cores
    python benchmarks/pretrain_step.py --presets tiny --rounds 3 --steps 5
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from torch import Tensor, nn

import dreamdiffusion
from dreamdiffusion.models.mae import (
    PRESETS,
    MAEConfig,
    MaskedEEGAutoencoder,
    flops_per_window,
    position_table,
)

MASK_RATIO = 0.75
DEFAULT_BATCH = {"tiny": 64, "18.3M": 32}
DEFAULT_STEPS = {"tiny": 10, "18.3M": 1}


# --------------------------------------------------------------------------------------------------
# The reference: timm/MAE-style modules, attention written out as in the authors' code.
# --------------------------------------------------------------------------------------------------


class ReferenceAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)) * self.scale
        attn = attn.float().softmax(dim=-1).to(v.dtype)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class ReferenceMlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class ReferenceBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = ReferenceAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = ReferenceMlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ReferencePatchEmbed1D(nn.Module):
    def __init__(self, n_chans: int, patch_size: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv1d(n_chans, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).transpose(1, 2).contiguous()


class ReferenceMAE(nn.Module):
    """MAE for EEG as in the authors' ``MAEforEEG`` (no checks, no options, same maths as ours)."""

    def __init__(self, c: MAEConfig) -> None:
        super().__init__()
        self.c = c
        self.patch_embed = ReferencePatchEmbed1D(c.n_chans, c.patch_size, c.embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.embed_dim))
        self.register_buffer("pos_embed", position_table(c.n_tokens, c.embed_dim)[None], persistent=False)
        self.blocks = nn.ModuleList(ReferenceBlock(c.embed_dim, c.num_heads, c.mlp_ratio) for _ in range(c.depth))
        self.norm = nn.LayerNorm(c.embed_dim)
        dd = c.decoder_embed_dim
        self.decoder_embed = nn.Linear(c.embed_dim, dd)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dd))
        self.register_buffer("decoder_pos_embed", position_table(c.n_tokens, dd)[None], persistent=False)
        self.decoder_blocks = nn.ModuleList(
            ReferenceBlock(dd, c.decoder_num_heads, c.mlp_ratio) for _ in range(c.decoder_depth)
        )
        self.decoder_norm = nn.LayerNorm(dd)
        self.decoder_pred = nn.Linear(dd, c.patch_size * c.n_chans)

    def patchify(self, x: Tensor) -> Tensor:
        b, c, t = x.shape
        p = self.c.patch_size
        return x.reshape(b, c, t // p, p).permute(0, 2, 1, 3).reshape(b, t // p, c * p)

    def random_masking(self, x: Tensor, mask_ratio: float) -> tuple[Tensor, Tensor, Tensor]:
        n, length, d = x.shape
        len_keep = int(length * (1 - mask_ratio))
        noise = torch.rand(n, length, device=x.device)
        ids_shuffle = torch.argsort(noise, dim=1)
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        ids_keep = ids_shuffle[:, :len_keep]
        x_masked = torch.gather(x, dim=1, index=ids_keep.unsqueeze(-1).repeat(1, 1, d))
        mask = torch.ones([n, length], device=x.device)
        mask[:, :len_keep] = 0
        mask = torch.gather(mask, dim=1, index=ids_restore)
        return x_masked, mask, ids_restore

    def forward_encoder(self, x: Tensor, mask_ratio: float) -> tuple[Tensor, Tensor, Tensor]:
        x = self.patch_embed(x) + self.pos_embed[:, 1:, :]
        x, mask, ids_restore = self.random_masking(x, mask_ratio)
        cls_token = self.cls_token + self.pos_embed[:, :1, :]
        x = torch.cat((cls_token.expand(x.shape[0], -1, -1), x), dim=1)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x), mask, ids_restore

    def forward_decoder(self, x: Tensor, ids_restore: Tensor) -> Tensor:
        x = self.decoder_embed(x)
        mask_tokens = self.mask_token.repeat(x.shape[0], ids_restore.shape[1] + 1 - x.shape[1], 1)
        x_ = torch.cat([x[:, 1:, :], mask_tokens], dim=1)
        x_ = torch.gather(x_, dim=1, index=ids_restore.unsqueeze(-1).repeat(1, 1, x.shape[2]))
        x = torch.cat([x[:, :1, :], x_], dim=1) + self.decoder_pos_embed
        for blk in self.decoder_blocks:
            x = blk(x)
        x = self.decoder_pred(self.decoder_norm(x))
        return x[:, 1:, :]

    def forward_loss(self, x: Tensor, pred: Tensor, mask: Tensor) -> Tensor:
        target = self.patchify(x)
        loss = ((pred.float() - target) ** 2).mean(dim=-1)
        return (loss * mask).sum() / mask.sum()

    def forward(self, x: Tensor, mask_ratio: float = 0.75) -> tuple[Tensor, Tensor, Tensor]:
        latent, mask, ids_restore = self.forward_encoder(x, mask_ratio)
        pred = self.forward_decoder(latent, ids_restore)
        return self.forward_loss(x, pred, mask), pred, mask


def reference_state_dict(ours: dict[str, Tensor]) -> dict[str, Tensor]:
    """Rename our state-dict keys to the reference's (timm/MAE names)."""
    renames = [
        ("encoder.patch_embed.", "patch_embed.proj."),
        ("encoder.cls_token", "cls_token"),
        ("encoder.blocks.", "blocks."),
        ("encoder.norm.", "norm."),
    ]
    out = {}
    for key, value in ours.items():
        for old, new in renames:
            if key.startswith(old):
                key = new + key[len(old):]
                break
        key = key.replace(".mlp.0.", ".mlp.fc1.").replace(".mlp.2.", ".mlp.fc2.")
        out[key] = value
    return out


def check_same_loss(ours: nn.Module, reference: nn.Module, x: Tensor) -> float:
    """Both models, same weights, same input and same mask (same RNG state) -> same loss and prediction."""
    losses, preds = [], []
    for model in (ours, reference):
        torch.manual_seed(1234)
        with torch.no_grad():
            loss, pred, _ = model(x, MASK_RATIO)
        losses.append(loss)
        preds.append(pred)
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(preds[0], preds[1], rtol=1e-4, atol=1e-5)
    return losses[0].item()


# --------------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------------


def make_train_step(model: nn.Module, x: Tensor, bf16: bool) -> Callable[[], None]:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(x, MASK_RATIO)[0]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def make_matmul(n: int, dtype: torch.dtype, repeats: int) -> Callable[[], None]:
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    c = torch.empty(n, n, dtype=dtype)

    def run() -> None:
        for _ in range(repeats):
            torch.mm(a, b, out=c)

    return run


def seconds(fn: Callable[[], None], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def table(rows: list[dict]) -> str:
    header = f"{'preset':<7} {'batch':>5}  {'impl':<12} {'dtype':<5} {'ms/step':>9} {'spread':>7} " \
             f"{'windows/s':>10} {'GFLOP/s':>8} {'/matmul':>8}"
    lines = [header, "-" * len(header)]
    for row in rows:
        batch = "" if row["batch"] is None else str(row["batch"])
        wps = "" if math.isnan(row["wps"]) else f"{row['wps']:.1f}"
        lines.append(f"{row['preset']:<7} {batch:>5}  {row['impl']:<12} {row['dtype']:<5} {row['ms']:>9.1f} "
                     f"{row['spread']:>6.0%} {wps:>10} {row['gflops']:>8.1f} {row['vs_matmul']:>8.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "18.3M"], choices=sorted(PRESETS))
    parser.add_argument("--batch-size", type=int, default=None,
                        help="windows per step (default: tiny 64, 18.3M 32, others 8)")
    parser.add_argument("--steps", type=int, default=None,
                        help="timed steps per contender per round (default: tiny 10, 18.3M 1, others 1)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; medians over rounds")
    parser.add_argument("--matmul-size", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    print(f"dreamdiffusion from {Path(dreamdiffusion.__file__).parent}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"CPU capability {torch.backends.cpu.get_cpu_capability()}, mask ratio {MASK_RATIO}")

    n = args.matmul_size
    matmul = {"fp32": make_matmul(n, torch.float32, 4), "bf16": make_matmul(n, torch.bfloat16, 4)}
    matmul_flops = 2 * n**3 * 4
    rows = []
    per_round: dict[str, dict[str, float]] = {}
    for name in args.presets:
        config = PRESETS[name]
        batch = args.batch_size or DEFAULT_BATCH.get(name, 8)
        steps = args.steps or DEFAULT_STEPS.get(name, 1)
        torch.manual_seed(0)
        ours = MaskedEEGAutoencoder(config)
        reference = ReferenceMAE(config)
        reference.load_state_dict(reference_state_dict(ours.state_dict()), strict=True)
        x = torch.randn(batch, config.n_chans, config.n_times)
        loss = check_same_loss(ours, reference, x)
        print(f"\n{name}: batch {batch}, {steps} step(s) x {args.rounds} rounds per contender; "
              f"same loss checked ({loss:.6f}); forward {flops_per_window(config, MASK_RATIO) / 1e9:.3f} "
              "GFLOP/window", flush=True)

        contenders: dict[str, Callable[[], None]] = {
            "ours fp32": make_train_step(ours, x, bf16=False),
            "reference fp32": make_train_step(reference, x, bf16=False),
            "ours bf16": make_train_step(ours, x, bf16=True),
            "reference bf16": make_train_step(reference, x, bf16=True),
            "matmul fp32": matmul["fp32"],
            "matmul bf16": matmul["bf16"],
        }
        for fn in contenders.values():  # warm-up: allocator, oneDNN kernels, AdamW state
            fn()
        times: dict[str, list[float]] = {label: [] for label in contenders}
        for r in range(args.rounds):
            order = list(contenders) if r % 2 == 0 else list(reversed(contenders))
            for label in order:
                calls = steps if label.startswith(("ours", "reference")) else 3
                times[label].append(seconds(contenders[label], calls))

        # on a busy machine the ratio within a round (contenders run back to back) is steadier than
        # the ratio of medians; both are printed
        per_round[name] = {
            dt: statistics.median(r / o for r, o in zip(times[f"reference {dt}"], times[f"ours {dt}"], strict=True))
            for dt in ("fp32", "bf16")
        }
        median = {label: statistics.median(t) for label, t in times.items()}
        spread = {label: (max(t) - min(t)) / median[label] for label, t in times.items()}
        gflops_matmul = {dt: matmul_flops / median[f"matmul {dt}"] / 1e9 for dt in ("fp32", "bf16")}
        fwd = flops_per_window(config, MASK_RATIO)
        for label in ("ours fp32", "reference fp32", "ours bf16", "reference bf16"):
            impl, dtype = label.split()
            wps = batch / median[label]
            achieved = 3 * fwd * wps / 1e9
            rows.append(dict(preset=name, batch=batch, impl=impl, dtype=dtype, ms=1e3 * median[label],
                             spread=spread[label], wps=wps, gflops=achieved,
                             vs_matmul=achieved / gflops_matmul[dtype]))
        for dt in ("fp32", "bf16"):
            rows.append(dict(preset=name, batch=None, impl=f"matmul {n}", dtype=dt,
                             ms=1e3 * median[f"matmul {dt}"] / 4, spread=spread[f"matmul {dt}"],
                             wps=math.nan, gflops=gflops_matmul[dt], vs_matmul=1.0))
        print(table([r for r in rows if r["preset"] == name]), flush=True)

    print("\n" + table(rows))
    print("(ms/step: median over rounds, matmul per call; spread: (max - min) / median over rounds)")

    print("\nratios: ours / reference windows/s (of medians | median of per-round ratios); "
          "achieved GFLOP/s / same-dtype matmul GFLOP/s")
    for name in args.presets:
        get = {(r["impl"], r["dtype"]): r for r in rows if r["preset"] == name}
        parts = []
        for dt in ("fp32", "bf16"):
            ratio = get[("ours", dt)]["wps"] / get[("reference", dt)]["wps"]
            parts.append(f"ours/ref {dt} {ratio:.2f} | {per_round[name][dt]:.2f}")
        for dt in ("fp32", "bf16"):
            parts.append(f"ours/matmul {dt} {get[('ours', dt)]['vs_matmul']:.2f}")
        print(f"  {name:<7} " + "  ".join(parts))


if __name__ == "__main__":
    main()
