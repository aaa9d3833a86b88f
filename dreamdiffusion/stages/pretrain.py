"""Stage 1: masked signal modeling (MSM) of unpaired EEG (DreamDiffusion Sec. 3.2).

``MSMPretrainModule`` trains :class:`~dreamdiffusion.models.mae.MaskedEEGAutoencoder` and, at the end
of fit, exports the encoder (``encoder.safetensors`` + ``encoder.json``) into the stage folder
(``trainer.default_root_dir``, i.e. ``<run_dir>/pretrain``), where stage 2 reads it.
"""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import torch
from torch import Tensor

from dreamdiffusion.models.encoder_file import save_encoder
from dreamdiffusion.models.mae import MaskedEEGAutoencoder
from dreamdiffusion.models.mae import preset as encoder_preset
from dreamdiffusion.stages.adamw import build_adamw, clip_gradients


def param_groups(module: torch.nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: weight decay on matrices, none on biases, norms and tokens (1-D or fewer dims)."""
    decay, no_decay = [], []
    for _, p in module.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or p.shape[:2] == (1, 1) else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_ratio: float = 0.0) -> float:
    """LR multiplier: linear warm-up over ``warmup_steps``, then half-cosine down to ``min_ratio``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class MSMPretrainModule(L.LightningModule):
    """Masked signal modeling of EEG windows ``[B, 128, 512]``.

    Parameters
    ----------
    preset
        Encoder size (:data:`dreamdiffusion.models.mae.PRESETS`): ``tiny``, ``18.3M``, ``74M``,
        ``162M``, ``297M`` (the paper's full model), ``458M``; ``152M`` is the authors' released encoder
        (mlp_ratio 1.0).
    mask_ratio
        Share of tokens removed per window (paper: 0.75; Table 2 sweeps 0.25/0.5/0.75/0.85).
    normalize_target
        Reconstruct per-token standardised targets (MAE's option; off in the authors' code).
    lr, weight_decay, betas
        AdamW; no weight decay on biases, norms and the cls/mask tokens (fused kernel where it applies:
        :mod:`dreamdiffusion.stages.adamw`).
    warmup_epochs, min_lr_ratio
        Per-step linear warm-up over this many epochs, then half-cosine to ``min_lr_ratio * lr``.
    gradient_checkpointing
        Recompute encoder blocks in the backward pass to save activation memory.
    plot_channels
        Channels drawn in the validation figure (original | masked input | reconstruction).
    """

    def __init__(
        self,
        preset: str = "297M",
        mask_ratio: float = 0.75,
        normalize_target: bool = False,
        lr: float = 2.5e-4,
        weight_decay: float = 0.05,
        betas: tuple[float, float] = (0.9, 0.95),
        warmup_epochs: float = 40,
        min_lr_ratio: float = 0.0,
        gradient_checkpointing: bool = False,
        plot_channels: int = 4,
    ) -> None:
        super().__init__()
        if not 0.0 <= mask_ratio < 1.0:
            raise ValueError(f"model.mask_ratio={mask_ratio} must lie in [0, 1)")
        self.save_hyperparameters()
        self.model = MaskedEEGAutoencoder(encoder_preset(preset), normalize_target=normalize_target)
        self.model.encoder.gradient_checkpointing = gradient_checkpointing
        self._plot_batch: Tensor | None = None

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return self.model(x, self.hparams.mask_ratio)

    def training_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        loss, _, _ = self(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch.shape[0])
        self.log("lr", self.optimizers().param_groups[0]["lr"], batch_size=batch.shape[0])
        return loss

    def validation_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        loss, _, _ = self(batch)
        self.log("val/loss", loss, prog_bar=True, sync_dist=True, batch_size=batch.shape[0])
        if batch_idx == 0:
            self._plot_batch = batch[:1].detach()
        return loss

    def on_validation_epoch_end(self) -> None:
        if self._plot_batch is None or self.trainer.sanity_checking or not self.trainer.is_global_zero:
            return
        experiment = getattr(self.logger, "experiment", None)
        if experiment is not None and hasattr(experiment, "add_figure"):
            experiment.add_figure("val/reconstruction", self.reconstruction_figure(self._plot_batch), self.global_step)
        self._plot_batch = None

    @torch.no_grad()
    def reconstruction_figure(self, x: Tensor):
        """Matplotlib figure of a few channels of ``x [1, C, T]``: original, masked input, reconstruction."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        _, pred, mask = self(x)
        p = self.model.config.patch_size
        removed = mask[0].repeat_interleave(p).bool().cpu()  # [T]
        original = x[0].float().cpu()
        recon = self.model.unpatchify(pred.float())[0].cpu()
        n = min(self.hparams.plot_channels, original.shape[0])
        fig, axes = plt.subplots(n, 1, figsize=(10, 1.6 * n), sharex=True, squeeze=False)
        for c, ax in enumerate(axes[:, 0]):
            visible = original[c].clone()
            visible[removed] = float("nan")
            ax.plot(original[c], color="0.7", lw=1, label="original")
            ax.plot(visible, color="tab:blue", lw=1, label="masked input")
            ax.plot(recon[c], color="tab:red", lw=1, alpha=0.8, label="reconstruction")
            ax.set_ylabel(f"ch {c}")
        axes[0, 0].legend(loc="upper right", fontsize=7, ncol=3)
        axes[-1, 0].set_xlabel("sample")
        fig.tight_layout()
        return fig

    def configure_optimizers(self):
        optimizer = build_adamw(
            self, param_groups(self.model, self.hparams.weight_decay), lr=self.hparams.lr, betas=tuple(self.hparams.betas)
        )
        total = max(1, int(self.trainer.estimated_stepping_batches))
        # Estimating the steps builds the training loader before a resumed checkpoint is restored, so the
        # loader's mid-epoch position would never be loaded; let the fit loop build it again afterwards.
        self.trainer.fit_loop._combined_loader = None
        epochs = self.trainer.max_epochs if self.trainer.max_epochs and self.trainer.max_epochs > 0 else 1
        warmup = int(round(self.hparams.warmup_epochs * total / epochs))
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: warmup_cosine(step, warmup, total, self.hparams.min_lr_ratio)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        clip_gradients(self, optimizer, gradient_clip_val, gradient_clip_algorithm)

    @property
    def export_dir(self) -> Path:
        """The stage folder: ``trainer.default_root_dir`` (``<run_dir>/pretrain`` in the configs)."""
        return Path(self.trainer.default_root_dir)

    def on_fit_end(self) -> None:
        if self.trainer.is_global_zero:
            save_encoder(
                self.model.encoder,
                self.export_dir,
                preset=self.hparams.preset,
                mask_ratio=self.hparams.mask_ratio,
                normalize_target=self.hparams.normalize_target,
                global_step=int(self.global_step),
            )
