"""Stage 0 (embedded default only): train the tiny base model that stands in for Stable Diffusion 1.5.

The paper starts from a text-to-image model that already draws (SD-1.5, Sec. 3.3) and replaces its text
condition by EEG. A random tiny SD draws coloured noise, so the demo would prove nothing; this stage
gives the demo a base model that draws the synthetic classes, in SD's own classes and folder layout::

    <sd>/unet/       UNet2DConditionModel (cross-attention on [B, 77, cross_attention_dim] tokens)
    <sd>/vae/        AutoencoderKL (8x down-sampling like SD's; scaling_factor set so latents have unit SD)
    <sd>/scheduler/  DDPMScheduler config (1000 steps, scaled-linear betas 0.00085 -> 0.012, as SD's)
    <sd>/captions/   captions.safetensors [K, 77, cross_attention_dim] + captions.json (class names)

Training, on pictures the synthetic generator draws from a random stream of its own
(``default_rng([seed, BASE_MODEL_STREAM])``; never a picture of the synthetic dataset), each stored as
JPEG and read back like stage 2 reads the dataset (whole picture resized to ``image_size``, [-1, 1]):

1. ``phase="vae"``: the VAE, ``‖x − D(z)‖² + kl_weight · KL(q(z|x) ‖ N(0, I))``, z ~ q(z|x);
2. the VAE is frozen; latents ``z_0 = scaling_factor · z`` as in stage 2;
3. ``phase="unet"``: the UNet and one learned caption per class — ``[77, cross_attention_dim]`` tokens,
   the stand-in for SD's CLIP text-encoder output of a class name — with SD's ε-prediction loss
   ``‖ε − ε_θ(z_t, t, caption_y)‖²``, t ~ U[0, 1000).

Stage 2 then replaces the caption by the EEG condition ``[B, 77, cross_attention_dim]`` exactly as the
paper replaces the text. ``dreamdiffusion weights demo`` runs this stage (:func:`fit_base_model`).
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, RandomSampler, TensorDataset

if TYPE_CHECKING:
    import diffusers

# The base model's pictures: np.random.default_rng([seed, BASE_MODEL_STREAM]) (the dataset uses 1-4).
BASE_MODEL_STREAM = 0x42415345  # "BASE"
PHASES = ("vae", "unet")


@dataclass(frozen=True)
class BaseModelConfig:
    """Every setting of stage 0, defaults in one place (the demo's: 10 classes, 32 px, 4x VAE: latents 4 x 8 x 8).

    ``pictures_per_class`` pictures of each of ``classes`` classes form the training set. VAE:
    ``vae_block_out_channels`` (one entry per block; n blocks down-sample 2^(n-1) times), ``vae_steps``
    AdamW steps of ``vae_batch_size`` pictures at ``vae_lr``, KL weight ``kl_weight``; ``vae_norm_num_groups``
    GroupNorm groups. UNet:
    ``unet_block_out_channels``, ``cross_attention_dim`` (the caption/EEG token size), ``caption_tokens``
    (77, SD's text length), ``unet_steps`` steps of ``unet_batch_size`` latents at ``unet_lr``; a share
    ``caption_dropout`` of the items sees the learned empty caption instead (as SD's training drops the text),
    so samples can use classifier-free guidance.
    """

    classes: int = 10
    seed: int = 0
    image_size: int = 32
    pictures_per_class: int = 100
    vae_block_out_channels: tuple[int, ...] = (32, 64, 64)
    vae_norm_num_groups: int = 8
    latent_channels: int = 4
    vae_steps: int = 500
    vae_batch_size: int = 32
    vae_lr: float = 2e-3
    kl_weight: float = 1e-6
    unet_block_out_channels: tuple[int, int] = (32, 64)
    cross_attention_dim: int = 32
    caption_tokens: int = 77
    unet_steps: int = 1500
    unet_batch_size: int = 32
    unet_lr: float = 1e-3
    caption_dropout: float = 0.1

    def __post_init__(self) -> None:
        if self.classes < 2:
            raise ValueError(f"classes={self.classes}: the base model needs at least 2 classes to tell apart")
        factor = 2 ** (len(self.vae_block_out_channels) - 1)
        if self.image_size % (factor * 2):
            raise ValueError(
                f"image_size={self.image_size} must be a multiple of {factor * 2}: the VAE down-samples {factor}x "
                "and the UNet once more"
            )
        if not 0 <= self.caption_dropout < 1:
            raise ValueError(f"caption_dropout={self.caption_dropout} must lie in [0, 1)")
        for key in ("pictures_per_class", "vae_steps", "vae_batch_size", "unet_steps", "unet_batch_size", "caption_tokens"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key}={getattr(self, key)} must be >= 1")

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae_block_out_channels) - 1)

    def to_dict(self) -> dict:
        return asdict(self)


def build_vae(config: BaseModelConfig) -> diffusers.AutoencoderKL:
    """SD's VAE class, small (attention in the middle block, as SD's: it gives the decoder the whole picture)."""
    from diffusers import AutoencoderKL

    blocks = len(config.vae_block_out_channels)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * blocks,
        up_block_types=("UpDecoderBlock2D",) * blocks,
        block_out_channels=config.vae_block_out_channels,
        layers_per_block=1,
        latent_channels=config.latent_channels,
        norm_num_groups=config.vae_norm_num_groups,
        sample_size=config.image_size,
    )
    # Start with a narrow posterior (SD's VAE ends up with one): z ~ q(z|x) is then close to its mean from the
    # first step and the decoder learns from latents that carry the picture, not from noise.
    with torch.no_grad():
        vae.quant_conv.bias[config.latent_channels :] = -8.0
    return vae


def build_unet(config: BaseModelConfig) -> diffusers.UNet2DConditionModel:
    """SD's UNet class, two levels: cross-attention at the latent resolution, none at half of it."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=config.image_size // config.vae_scale_factor,
        in_channels=config.latent_channels,
        out_channels=config.latent_channels,
        block_out_channels=config.unet_block_out_channels,
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=config.cross_attention_dim,
        attention_head_dim=8,
        norm_num_groups=8,
    )


def build_noise_scheduler() -> diffusers.DDPMScheduler:
    """SD-1.5's training noise schedule: 1000 steps, β scaled-linear 0.00085 → 0.012."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        clip_sample=False, steps_offset=1,
    )


class BaseModelModule(L.LightningModule):
    """Stage 0: the VAE (``phase="vae"``), then the UNet and the class captions (``phase="unet"``).

    Batches: ``phase="vae"``: ``(images [B, 3, S, S] in [-1, 1],)``; ``phase="unet"``: ``(latent_mean
    [B, c, S/f, S/f], latent_std [B, c, S/f, S/f], labels [B])`` of the frozen VAE's posterior.
    """

    def __init__(self, config: BaseModelConfig) -> None:
        super().__init__()
        self.config = config
        torch.manual_seed(config.seed)
        self.vae = build_vae(config)
        self.unet = build_unet(config)
        self.noise_scheduler = build_noise_scheduler()
        # One caption per class: [K, 77, D] tokens, unit scale like a layer-normed text encoder's output.
        self.captions = nn.Parameter(torch.randn(config.classes, config.caption_tokens, config.cross_attention_dim))
        self.empty_caption = nn.Parameter(torch.randn(1, config.caption_tokens, config.cross_attention_dim))
        self.phase = "vae"
        self.losses: dict[str, list[float]] = {phase: [] for phase in PHASES}

    def vae_loss(self, images: Tensor) -> Tensor:
        """Reconstruction MSE of a posterior sample + ``kl_weight`` · KL (summed over latent cells, batch mean)."""
        posterior = self.vae.encode(images).latent_dist
        reconstruction = self.vae.decode(posterior.sample()).sample
        return F.mse_loss(reconstruction, images) + self.config.kl_weight * posterior.kl().mean()

    def diffusion_loss(self, latent_mean: Tensor, latent_std: Tensor, labels: Tensor) -> Tensor:
        """SD's ε-prediction MSE at a uniform timestep, conditioned on the class captions ``[B, 77, D]``."""
        z0 = (latent_mean + latent_std * torch.randn_like(latent_std)) * self.vae.config.scaling_factor
        noise = torch.randn_like(z0)
        t = torch.randint(0, self.noise_scheduler.config.num_train_timesteps, (z0.shape[0],), device=z0.device)
        zt = self.noise_scheduler.add_noise(z0, noise, t)
        captions = self.captions[labels]
        dropped = torch.rand(labels.shape[0], device=labels.device) < self.config.caption_dropout
        captions = torch.where(dropped[:, None, None], self.empty_caption.expand_as(captions), captions)
        return F.mse_loss(self.unet(zt, t, encoder_hidden_states=captions).sample, noise)

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:
        loss = self.vae_loss(batch[0]) if self.phase == "vae" else self.diffusion_loss(*batch)
        self.losses[self.phase].append(float(loss.detach()))
        self.log(f"{self.phase}/loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self) -> dict:
        """AdamW on the phase's parameters with a one-cycle schedule (warm up, anneal to ~0): in a few hundred
        steps the annealed end does what an EMA of the weights does in a long run."""
        c = self.config
        if self.phase == "vae":
            params, lr, steps = list(self.vae.parameters()), c.vae_lr, c.vae_steps
        else:
            params, lr, steps = [*self.unet.parameters(), self.captions, self.empty_caption], c.unet_lr, c.unet_steps
        optimiser = torch.optim.AdamW(params, lr=lr)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, total_steps=steps, pct_start=0.2)
        return {"optimizer": optimiser, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    @torch.no_grad()
    def freeze_vae(self, images: Tensor, batch_size: int = 100) -> tuple[Tensor, Tensor]:
        """Freeze the VAE, set its ``scaling_factor`` to 1 / SD of the latents of ``images`` (SD's 0.18215 was
        chosen the same way) and return the posterior ``(mean, std)`` of every picture, ``[N, c, S/f, S/f]``."""
        self.vae.eval().requires_grad_(False)
        means, stds = [], []
        for chunk in images.split(batch_size):
            posterior = self.vae.encode(chunk).latent_dist
            means.append(posterior.mean)
            stds.append(posterior.std)
        mean, std = torch.cat(means), torch.cat(stds)
        spread = torch.sqrt(mean.var() + std.pow(2).mean())  # SD of z = mean + std · ε over pictures and cells
        self.vae.register_to_config(scaling_factor=float(1.0 / spread))
        return mean, std


def training_pictures(config: BaseModelConfig) -> tuple[Tensor, Tensor]:
    """``(images [N, 3, S, S] in [-1, 1], labels [N])``: the base model's own pictures, as stage 2 reads pictures."""
    from dreamdiffusion.data.images import stored_pictures_tensor
    from dreamdiffusion.data.synthetic import own_pictures

    pictures, labels = own_pictures(BASE_MODEL_STREAM, config.classes, config.pictures_per_class, config.seed)
    return stored_pictures_tensor(pictures, config.image_size), torch.tensor(labels)


def _fit_phase(module: BaseModelModule, phase: str, dataset: TensorDataset, steps: int, batch_size: int) -> None:
    """``steps`` optimiser steps of ``phase`` on batches drawn with replacement (seeded)."""
    module.phase = phase
    sampler = RandomSampler(dataset, replacement=True, num_samples=steps * batch_size,
                            generator=torch.Generator().manual_seed(module.config.seed))
    module.train()
    if phase == "unet":
        module.vae.eval()
    lightning_log = logging.getLogger("lightning.pytorch")
    level = lightning_log.level
    lightning_log.setLevel(logging.WARNING)  # two phases inside one command: no device banner twice
    try:
        trainer = L.Trainer(
            accelerator="cpu", devices=1, max_epochs=1, max_steps=steps, logger=False, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
        )
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*module\\(s\\) in eval mode", category=UserWarning)  # the frozen VAE
            warnings.filterwarnings("ignore", message=".*treespec, LeafSpec")  # lightning's own, about torch's pytree
            trainer.fit(module, DataLoader(dataset, batch_size=batch_size, sampler=sampler))
    finally:
        lightning_log.setLevel(level)


def fit_base_model(config: BaseModelConfig) -> BaseModelModule:
    """Stage 0 end to end: train the VAE, freeze it, train the UNet and captions; returns the module."""
    L.seed_everything(config.seed, verbose=False)
    images, labels = training_pictures(config)
    module = BaseModelModule(config)
    threads = torch.get_num_threads()
    # These convolutions are too small to split: on 2 CPU cores a second thread made stage 0 slower (its
    # threads waited on each other in the convolution backward), so it runs on one.
    torch.set_num_threads(1)
    try:
        _fit_phase(module, "vae", TensorDataset(images), config.vae_steps, config.vae_batch_size)
        mean, std = module.freeze_vae(images)
        _fit_phase(module, "unet", TensorDataset(mean, std, labels), config.unet_steps, config.unet_batch_size)
    finally:
        torch.set_num_threads(threads)
    module.eval().requires_grad_(False)
    return module


@torch.no_grad()
def reconstruction_psnr(vae, images: Tensor, batch_size: int = 100) -> float:
    """PSNR (dB, peak-to-peak 2 of [-1, 1]) of ``vae`` reconstructions (posterior mean) of ``images``."""
    errors = []
    for chunk in images.split(batch_size):
        reconstruction = vae.decode(vae.encode(chunk).latent_dist.mode()).sample.clamp(-1, 1)
        errors.append(F.mse_loss(reconstruction, chunk, reduction="none").flatten(1).mean(1))
    return float(10 * torch.log10(4.0 / torch.cat(errors).mean()))


def save_base_model(module: BaseModelModule, folder: str | os.PathLike, class_names: list[str]) -> Path:
    """Write the trained base model in SD's diffusers layout (+ ``captions/``) to ``folder``; every weights
    file records what it was trained on (safetensors metadata ``provenance``)."""
    from dreamdiffusion.models.captions import save_captions
    from dreamdiffusion.models.provenance import write_folder_provenance

    folder = Path(folder)
    c = module.config
    provenance = (
        f"stage 0 of the embedded default: trained on {c.classes * c.pictures_per_class} synthetic pictures "
        f"({c.classes} classes) drawn from default_rng([{c.seed}, {BASE_MODEL_STREAM}]), none from a synthetic dataset"
    )
    module.unet.save_pretrained(folder / "unet")
    module.vae.save_pretrained(folder / "vae")
    module.noise_scheduler.save_pretrained(folder / "scheduler")
    write_folder_provenance(folder, provenance)
    save_captions(folder / "captions", module.captions.detach(), class_names, provenance, empty=module.empty_caption.detach())
    return folder
