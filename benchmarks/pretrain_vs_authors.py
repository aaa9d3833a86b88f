"""Stage-1 training step: ours, as a user runs it, against the authors' own ``MAEforEEG`` on the same weights.

**Ours** is :class:`~dreamdiffusion.stages.pretrain.MSMPretrainModule` under a Lightning ``Trainer``
(``precision`` ``32-true`` or ``bf16-mixed``, ``gradient_clip_val`` 0.8, the module's own AdamW), timed from
``on_train_batch_start`` to ``on_train_batch_end``: forward, loss, backward, clipping, optimizer step and the
module's logging calls (no logger attached, no progress bar, no checkpointing; the encoder export at the end
of fit is switched off).

**Theirs** is ``MAEforEEG`` from the authors' repository (``code/sc_mbm/mae_for_eeg.py``, timm 0.5.4 blocks)
loaded with our weights (:func:`~dreamdiffusion.models.authors_mae_layout.to_authors_state_dict`) and trained
the way their ``train_one_epoch`` does it: ``autocast`` forward, ``loss.item()`` finite check, backward,
``clip_grad_norm_`` 0.8, AdamW (betas 0.9/0.95, weight decay 0.05 on matrices, PyTorch's default
implementation), ``zero_grad``. Their per-iteration learning-rate update is left out (a few assignments).

Before anything is timed, both models get the same input and the same mask (same RNG state) in fp32 and
must give the same loss (relative 1e-5). Then, per case (batch size x precision), one ``Trainer.fit`` runs
``warmup + rounds`` of our steps; in every round the authors' step and a fp32 and a bf16 square matmul are
timed right after ours (before ours in odd rounds), so load from other processes hits all alike. Printed:
median seconds per step, the median of the per-round ratios (authors' time / ours = our speed-up), and the
achieved FLOP rate (3 x ``flops_per_window`` x windows/s) as a fraction of the same round's matmul rate.

Needs the authors' code (a folder holding their ``sc_mbm/``: a clone's ``code/`` folder) and timm 0.5.4 in a
folder of its own; neither is installed into the environment, both are put on ``sys.path`` of this process::

    pip install --no-deps --target /tmp/timm054 timm==0.5.4
    python benchmarks/pretrain_vs_authors.py --authors PATH/code --timm /tmp/timm054 --preset 18.3M --batch 8
    python benchmarks/pretrain_vs_authors.py --authors PATH/code --timm /tmp/timm054 --preset 297M \\
        --cases 8:fp32 8:bf16 64:bf16 --rounds 3

``--authors``/``--timm`` default to ``$DREAMDIFFUSION_AUTHORS_MAE``/``$DREAMDIFFUSION_TIMM054``.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lightning as L
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

import dreamdiffusion
from dreamdiffusion.models.authors_mae_layout import to_authors_state_dict
from dreamdiffusion.models.mae import PRESETS, MAEConfig, flops_per_window
from dreamdiffusion.stages.pretrain import MSMPretrainModule

MASK_RATIO = 0.75
CLIP = 0.8
PRECISION = {"fp32": "32-true", "bf16": "bf16-mixed"}


def import_authors(code: str | None, timm_dir: str | None) -> type[nn.Module]:
    """``MAEforEEG`` from ``code/sc_mbm/mae_for_eeg.py`` with timm 0.5.4 from ``timm_dir``; errors say what to pass."""
    for value, option, env in ((code, "--authors", "DREAMDIFFUSION_AUTHORS_MAE"), (timm_dir, "--timm", "DREAMDIFFUSION_TIMM054")):
        if not value:
            sys.exit(f"give {option} (or set ${env})")
        if not Path(value).is_dir():
            sys.exit(f"{option} {value} is not a folder")
    if not (Path(code) / "sc_mbm" / "mae_for_eeg.py").is_file():
        sys.exit(f"--authors {code} holds no sc_mbm/mae_for_eeg.py; give the authors' code/ folder")
    sys.path[:0] = [timm_dir, code]
    import timm

    if timm.__version__ != "0.5.4":
        sys.exit(f"timm {timm.__version__} was imported from {timm.__file__}; the authors' code needs 0.5.4: "
                 f"pip install --no-deps --target {timm_dir} timm==0.5.4")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # timm 0.5.4 uses torch.jit.script
        from sc_mbm.mae_for_eeg import MAEforEEG
    return MAEforEEG


def build_authors(MAEforEEG: type[nn.Module], c: MAEConfig) -> nn.Module:
    return MAEforEEG(time_len=c.n_times, patch_size=c.patch_size, embed_dim=c.embed_dim, in_chans=c.n_chans,
                     depth=c.depth, num_heads=c.num_heads, decoder_embed_dim=c.decoder_embed_dim,
                     decoder_depth=c.decoder_depth, decoder_num_heads=c.decoder_num_heads, mlp_ratio=c.mlp_ratio)


def check_same_loss(ours: nn.Module, theirs: nn.Module, x: Tensor) -> float:
    """Same weights, input and mask (both draw ``torch.rand(B, L)`` once) in fp32 -> same loss (relative 1e-5)."""
    results = []
    for model in (ours, theirs):
        torch.manual_seed(1234)
        with torch.no_grad():
            results.append(model(x, mask_ratio=MASK_RATIO))
    (loss, _, mask), (their_loss, _, their_mask) = results
    if not torch.equal(mask, their_mask):
        sys.exit("the two models drew different masks from the same RNG state; the comparison is void")
    torch.testing.assert_close(loss, their_loss, rtol=1e-5, atol=0)
    return loss.item()


def authors_step(model: nn.Module, x: Tensor, bf16: bool) -> Callable[[], None]:
    """One iteration of the authors' ``train_one_epoch`` (no gradient scaler: bf16 needs none)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}],
                                  lr=2.5e-4, betas=(0.9, 0.95))

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss, _, _ = model(x, mask_ratio=MASK_RATIO)
        if not math.isfinite(loss.item()):
            raise FloatingPointError("the authors' loss is not finite")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        optimizer.step()
        optimizer.zero_grad()

    return step


def matmul(n: int, dtype: torch.dtype, calls: int = 3) -> Callable[[], float]:
    """A callable that times ``calls`` ``[n, n] @ [n, n]`` products and returns GFLOP/s."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    out = torch.empty(n, n, dtype=dtype)
    torch.mm(a, b, out=out)

    def run() -> float:
        start = time.perf_counter()
        for _ in range(calls):
            torch.mm(a, b, out=out)
        return 2 * n**3 * calls / (time.perf_counter() - start) / 1e9

    return run


class Windows(Dataset):
    """``length`` copies of the rows of ``x [B, C, T]``: every batch is ``x``."""

    def __init__(self, x: Tensor, length: int) -> None:
        self.x, self.length = x, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> Tensor:
        return self.x[i % len(self.x)]


class NoExport(MSMPretrainModule):
    """The stage-1 module without the encoder export at the end of fit (not part of a step)."""

    def on_fit_end(self) -> None:
        pass


class Rounds(L.Callback):
    """Times our steps batch start to batch end; runs the others right after (before, in odd rounds)."""

    def __init__(self, warmup: int, others: dict[str, Callable[[], float]]) -> None:
        self.warmup, self.others = warmup, others
        self.times: dict[str, list[float]] = {"ours": [], **{k: [] for k in others}}

    def _run_others(self, batch_idx: int) -> None:
        for label, fn in self.others.items():
            value = fn()
            if batch_idx >= self.warmup:
                self.times[label].append(value)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if (batch_idx - self.warmup) % 2 == 1:
            self._run_others(batch_idx)
        self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        seconds = time.perf_counter() - self.start
        if batch_idx >= self.warmup:
            self.times["ours"].append(seconds)
        if (batch_idx - self.warmup) % 2 != 1:
            self._run_others(batch_idx)


def timed(fn: Callable[[], None]) -> Callable[[], float]:
    def run() -> float:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    return run


def run_case(module: NoExport, theirs: nn.Module, x: Tensor, precision: str, warmup: int, rounds: int,
             matmul_size: int, root: Path) -> dict[str, list[float]]:
    others = {
        "authors": timed(authors_step(theirs, x, bf16=precision == "bf16")),
        "matmul fp32": matmul(matmul_size, torch.float32),
        "matmul bf16": matmul(matmul_size, torch.bfloat16),
    }
    rounds_cb = Rounds(warmup, others)
    trainer = L.Trainer(
        accelerator="cpu", devices=1, precision=PRECISION[precision], gradient_clip_val=CLIP,
        max_steps=warmup + rounds, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0, callbacks=[rounds_cb],
        default_root_dir=root,
    )
    loader = DataLoader(Windows(x, len(x) * (warmup + rounds)), batch_size=len(x))
    trainer.fit(module, train_dataloaders=loader)
    times = rounds_cb.times
    # Both optimizers' states (4 bytes x 2 per parameter each) and the gradients would otherwise live on through
    # the trainer's reference cycles into the next case: at 297M that is 8 GB more at its peak.
    rounds_cb.others.clear()
    trainer.strategy.optimizers = []
    module.zero_grad(set_to_none=True)
    theirs.zero_grad(set_to_none=True)
    del trainer, rounds_cb, others
    gc.collect()
    return times


def peak_rss_gib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def cpu_line() -> str:
    flags = set()
    name = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and name == "unknown CPU":
                name = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    marks = ", ".join(f"{f} {'yes' if f in flags else 'NO'}" for f in ("avx512f", "avx512_bf16", "amx_bf16"))
    return f"{name} ({marks}), {os.cpu_count()} logical CPUs"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--authors", default=os.environ.get("DREAMDIFFUSION_AUTHORS_MAE"),
                        help="folder holding the authors' sc_mbm/ (their repository's code/)")
    parser.add_argument("--timm", default=os.environ.get("DREAMDIFFUSION_TIMM054"), help="folder holding timm 0.5.4")
    parser.add_argument("--preset", nargs="+", default=["18.3M"], choices=sorted(PRESETS))
    parser.add_argument("--batch", nargs="+", type=int, default=[8])
    parser.add_argument("--precision", nargs="+", default=["fp32", "bf16"], choices=sorted(PRECISION))
    parser.add_argument("--cases", nargs="+", default=None, metavar="BATCH:PRECISION",
                        help="explicit cases instead of every --batch x --precision, e.g. 8:fp32 8:bf16 64:bf16")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per case")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per case first")
    parser.add_argument("--matmul-size", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.cases:
        try:
            cases = [(int(b), p) for b, p in (c.split(":") for c in args.cases)]
        except ValueError:
            sys.exit(f"--cases {args.cases}: write each case as BATCH:PRECISION, e.g. 8:bf16")
        if bad := [p for _, p in cases if p not in PRECISION]:
            sys.exit(f"--cases: precision {bad[0]!r} is not one of {sorted(PRECISION)}")
    else:
        cases = [(b, p) for b in args.batch for p in args.precision]
    if args.threads:
        torch.set_num_threads(args.threads)
    MAEforEEG = import_authors(args.authors, args.timm)

    print(f"dreamdiffusion from {Path(dreamdiffusion.__file__).parent}; authors' code from {args.authors}")
    print(f"{cpu_line()}; torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"load average {os.getloadavg()[0]:.1f} at start")
    summary = []
    with tempfile.TemporaryDirectory(prefix="pretrain-vs-authors-") as tmp:
        for name in args.preset:
            config = PRESETS[name]
            L.seed_everything(0, verbose=False)
            module = NoExport(preset=name, mask_ratio=MASK_RATIO)
            theirs = build_authors(MAEforEEG, config)
            theirs.load_state_dict(to_authors_state_dict(module.model), strict=True)
            n_ours = sum(p.numel() for p in module.parameters() if p.requires_grad)
            n_theirs = sum(p.numel() for p in theirs.parameters() if p.requires_grad)
            loss = check_same_loss(module.model, theirs, torch.randn(2, config.n_chans, config.n_times))
            fwd = flops_per_window(config, MASK_RATIO)
            print(f"\n{name}: {n_ours:,} trainable parameters (authors' {n_theirs:,}); same fp32 loss on the same "
                  f"weights, input and mask: {loss:.6f}; forward {fwd / 1e9:.2f} GFLOP/window", flush=True)
            for batch, precision in cases:
                x = torch.randn(batch, config.n_chans, config.n_times)
                start = time.perf_counter()
                t = run_case(module, theirs, x, precision, args.warmup, args.rounds, args.matmul_size, Path(tmp))
                speedup = statistics.median(a / o for a, o in zip(t["authors"], t["ours"], strict=True))
                rate = {k: statistics.median(t[f"matmul {k}"]) for k in ("fp32", "bf16")}
                achieved = {k: 3 * fwd * batch / statistics.median(t[k]) / 1e9 for k in ("ours", "authors")}
                row = dict(preset=name, batch=batch, precision=precision, ours=statistics.median(t["ours"]),
                           authors=statistics.median(t["authors"]), speedup=speedup,
                           ours_frac=achieved["ours"] / rate[precision], authors_frac=achieved["authors"] / rate[precision],
                           mm_fp32=rate["fp32"], mm_bf16=rate["bf16"], load=os.getloadavg()[0])
                summary.append(row)
                print(f"  batch {batch:>3} {precision}: ours {row['ours']:.2f} s/step ({', '.join(f'{v:.2f}' for v in t['ours'])}), "
                      f"authors {row['authors']:.2f} ({', '.join(f'{v:.2f}' for v in t['authors'])}); speed-up "
                      f"{speedup:.2f}x (median of per-round ratios); matmul fp32 {rate['fp32']:.0f} / bf16 "
                      f"{rate['bf16']:.0f} GFLOP/s; {time.perf_counter() - start:.0f} s; peak RSS {peak_rss_gib():.1f} GiB", flush=True)
            del module, theirs

    print(f"\n{'preset':<6} {'batch':>5} {'prec':<5} {'ours s':>7} {'authors s':>9} {'ours/authors speed':>18} "
          f"{'ours/matmul':>11} {'authors/matmul':>14} {'mm fp32':>7} {'mm bf16':>7} {'load':>5}")
    for r in summary:
        print(f"{r['preset']:<6} {r['batch']:>5} {r['precision']:<5} {r['ours']:>7.2f} {r['authors']:>9.2f} "
              f"{r['speedup']:>18.2f} {r['ours_frac']:>11.2f} {r['authors_frac']:>14.2f} {r['mm_fp32']:>7.0f} "
              f"{r['mm_bf16']:>7.0f} {r['load']:>5.1f}")
    print(f"(s: median seconds per step over {args.rounds} rounds after {args.warmup} warm-up; speed: median of per-round "
          "authors/ours time ratios; /matmul: achieved FLOP rate over the same precision's matmul rate of the same rounds)")


if __name__ == "__main__":
    main()
