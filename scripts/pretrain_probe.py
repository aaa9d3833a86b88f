"""Does a stage-1 encoder help stage 2? A fast proxy on a paired set's train split, scored on its val split.

For each seed the EEG encoder plus the CLIP head's shape (``EEGConditionModel.clip_embedding``: a
token-weighting ``Conv1d(L -> 1)`` then a ``Linear``, here to one logit per class) is fine-tuned together
on the train split's windows (all subjects, class cross-entropy) for a fixed budget, once from each
stage-1 encoder given and once from a random initialisation ("scratch"), with the same seed, data
order and head initialisation. The figure is class accuracy on the val split (never the test split).

    dreamdiffusion data synth-imagenet-eeg --out runs/demo/data --subjects 6 --snr 1.5
    dreamdiffusion fit -c configs/demo/pretrain.yaml
    python scripts/pretrain_probe.py --data runs/demo/data --encoder runs/demo/pretrain --seeds 0 1 2

Prints one line per seed and encoder, then mean ± SD, and writes ``--json`` when given.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from dreamdiffusion.data.imagenet_eeg_files import load_eeg_file, load_split_file
from dreamdiffusion.data.imagenet_eeg_selection import cut_windows, select_trials
from dreamdiffusion.models.condition import ConditionConfig, EEGConditionModel
from dreamdiffusion.models.encoder_file import load_encoder
from dreamdiffusion.models.mae import preset


def split_windows(data: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(windows [N, 128, 512], labels [N])`` of one split, every subject, as stage 2 cuts them (20..460)."""
    eeg = load_eeg_file(data / "eeg_5_95_std.pth")
    splits_path = data / "block_splits_by_image_all.pth"
    positions = select_trials(eeg, load_split_file(splits_path, 0), splits_path, "all").positions[split]
    trials = [eeg.trials[p] for p in positions]
    return cut_windows(trials, 20, 460, 512), torch.tensor([int(t["label"]) for t in trials])


def probe(encoder_dir: Path | None, preset_name: str, train, val, classes: int, seed: int,
          epochs: int, lr: float, batch_size: int, weight_decay: float, freeze_encoder: bool = False) -> dict:
    """Fine-tune encoder + head from ``encoder_dir`` (``None``: random init) and score the val split;
    ``freeze_encoder`` trains the head alone (a linear probe of the encoder's tokens)."""
    torch.manual_seed(seed)
    config = ConditionConfig(preset(preset_name), cross_attention_dim=8, clip_dim=classes)
    model = EEGConditionModel(config)  # head (and scratch encoder) initialised from the seed
    if encoder_dir is not None:
        model.encoder = load_encoder(encoder_dir, expected=config.encoder)
    trained = ("clip_token.", "clip_proj.") if freeze_encoder else ("encoder.", "clip_token.", "clip_proj.")
    parameters = [p for n, p in model.named_parameters() if n.startswith(trained)]
    optimiser = torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay)
    (x, y), (xv, yv) = train, val
    order = torch.Generator().manual_seed(seed)
    curve = []
    for _ in range(epochs):
        model.train()
        model.encoder.train(not freeze_encoder)
        for batch in torch.randperm(len(x), generator=order).split(batch_size):
            loss = F.cross_entropy(model.clip_embedding(model.encoder(x[batch])), y[batch])
            optimiser.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, 0.5)
            optimiser.step()
        model.eval()
        with torch.no_grad():
            curve.append((model.clip_embedding(model.encoder(xv)).argmax(1) == yv).float().mean().item())
    return {"val_accuracy": curve[-1], "best_val_accuracy": max(curve), "curve": curve}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="paired set folder (synth-imagenet-eeg --out)")
    parser.add_argument("--encoder", type=Path, action="append", default=[], help="stage-1 folder (repeatable)")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=30, help="the demo's stage-2 budget")
    parser.add_argument("--lr", type=float, default=1e-3, help="the demo's stage-2 learning rate")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--freeze-encoder", action="store_true", help="train the head alone (linear probe)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    train, val = split_windows(args.data, "train"), split_windows(args.data, "val")
    classes = int(max(train[1].max(), val[1].max())) + 1
    print(f"{args.data}: {len(train[1])} train / {len(val[1])} val windows, {classes} classes (chance {1 / classes:.1%})")
    runs: dict[str, list[dict]] = {}
    for seed in args.seeds:
        for name, folder in [("scratch", None)] + [(str(e), e) for e in args.encoder]:
            start = time.process_time()
            result = probe(folder, args.preset, train, val, classes, seed, args.epochs, args.lr, args.batch_size, args.weight_decay,
                           args.freeze_encoder)
            runs.setdefault(name, []).append({"seed": seed, **result})
            print(f"seed {seed} {name}: val accuracy {result['val_accuracy']:.1%} (best epoch {result['best_val_accuracy']:.1%}), "
                  f"{time.process_time() - start:.0f} CPU-s", flush=True)
    summary = {}
    for name, results in runs.items():
        final = [r["val_accuracy"] for r in results]
        summary[name] = {"mean": statistics.mean(final), "sd": statistics.stdev(final) if len(final) > 1 else 0.0}
        print(f"{name}: {summary[name]['mean']:.1%} ± {summary[name]['sd']:.1%} over seeds {args.seeds}")
    if args.json:
        report = {"args": {k: str(v) for k, v in vars(args).items()}, "summary": summary, "runs": runs}
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
