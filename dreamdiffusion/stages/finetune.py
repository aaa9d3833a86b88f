"""Stage 2: fine-tune Stable Diffusion on EEG through cross-attention, with the CLIP loss (Sec. 3.3–3.4).

``EEGSDFinetuneModule`` trains, on paired batches ``{eeg, image, clip_pixels, ...}`` (see
:mod:`dreamdiffusion.data.imagenet_eeg`)::

    L = sd_loss_weight · L_SD + clip_loss_weight · L_clip
    L_SD   = ‖ε − ε_θ(z_t, t, τθ(y))‖²        z_0 = VAE latent sample × scaling_factor, t ~ U[0, T)    (Eq. 2)
    L_clip = 1 − cos(h(y), E_I(image))        E_I = CLIP image_embeds (projected, not normalised)       (Eq. 3)

Trainable sets (:mod:`dreamdiffusion.stages.finetune_trainable`; everything else is frozen, kept in eval mode
and run under ``no_grad`` where no gradient has to flow through it):

* ``train_encoder`` (E): the stage-1 EEG encoder.
* ``train_cross_attention`` (A): every UNet ``BasicTransformerBlock``'s ``attn2`` (cross-attention) and
  the ``norm2`` LayerNorm right before it, selected by module type and path.
* The condition mappers train whenever L_SD is on (in E, A and E+A alike), the CLIP head h whenever L_clip is
  on, the learned null condition with ``condition_dropout`` > 0: "trainable" means "gets a gradient".

At the end of fit the stage folder (``trainer.default_root_dir``) receives ``pipeline/`` — the
:class:`~dreamdiffusion.pipeline.DreamDiffusionPipeline` built from the weights of the best checkpoint by
the ``ModelCheckpoint`` monitor when there is one, else from the last weights — and ``export.json``
saying which; checkpoints leave out the frozen towers (:mod:`dreamdiffusion.stages.finetune_export`).
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor

from dreamdiffusion.generation import DEFAULT_SAMPLER
from dreamdiffusion.metrics import RetrievalTop1, image_ids
from dreamdiffusion.models.backbones import CLIP_VIT_L14, SD15, clip_projection_dim, load_clip, load_sd
from dreamdiffusion.models.condition import Condition, EEGConditionModel
from dreamdiffusion.models.mae import preset as encoder_preset_config
from dreamdiffusion.stages import finetune_export
from dreamdiffusion.stages.adamw import build_adamw, clip_gradients
from dreamdiffusion.stages.finetune_trainable import check_trainable_settings, cross_attention_module_names, select_trainable


def clip_loss(predicted: Tensor, target: Tensor) -> Tensor:
    """Eq. 3: mean over the batch of ``1 − cos(predicted, target)``; both ``[B, clip_dim]``."""
    return (1.0 - F.cosine_similarity(predicted.float(), target.float(), dim=-1)).mean()


class EEGSDFinetuneModule(L.LightningModule):
    """Stable Diffusion conditioned on EEG, trained with L_SD + L_clip.

    Parameters
    ----------
    sd_model, clip_model
        Local folder or hub id of Stable Diffusion 1.5 (diffusers layout: ``unet/ vae/ scheduler/``)
        and of the CLIP image tower (``CLIPVisionModelWithProjection`` + processor).
    local_files_only
        Never reach a hub: only the local cache or folders.
    encoder_dir
        Stage-1 folder with ``encoder.safetensors`` + ``encoder.json``; ``None`` starts the encoder from
        random weights (the "no pre-training" ablation).
    encoder_preset
        The encoder architecture expected in ``encoder_dir`` (``tiny``, ``18.3M`` … ``458M``, or ``152M``:
        the authors' released encoder); another one is refused.
    train_encoder, train_cross_attention
        The E and A sets (see the module docstring).
    sd_loss_weight, clip_loss_weight
        Weights of L_SD and L_clip (paper: 1 and 1; "no CLIP": clip 0; "CLIP only": sd 0).
    lr, weight_decay, betas
        AdamW on the trainable set (paper: lr 5.3e-5; weight decay is AdamW's default 0.01).
    encoder_lr
        Learning rate of the EEG encoder's own weights (``encoder.*``); ``null``: ``lr`` (the paper: one rate
        for everything). A lower rate keeps more of what stage 1 learned while the new mappers and the
        cross-attention learn at ``lr``, as in the usual fine-tuning of a pre-trained backbone.
    condition_dropout
        Probability of replacing an item's condition with the learned null condition (trains it for
        classifier-free guidance; off in the paper).
    time_condition
        A vector added to the timestep embedding (UNet loaded with ``class_embed_type="identity"``); off by
        default (not in the paper). ``true`` or ``"tokens"``: ``Linear`` on the pooled encoder tokens;
        ``"condition"``: the authors' module ``Conv1d(77->38) -> Conv1d(38->1) -> Linear(768->1280)`` on the
        ``[B, 77, 768]`` condition (their released checkpoint).
    token_mapper_hidden, encoder_cls_token
        The authors' released architecture (see :class:`~dreamdiffusion.models.condition.EEGConditionModel`):
        a two-layer token mapper of this width (their 64; ``null``: the paper's one layer), and ``false``
        for an encoder that attends over the patch tokens only.
    gradient_checkpointing
        Recompute UNet and encoder blocks in the backward pass (less activation memory, ~30% slower).
    use_cached_latents, use_cached_clip_embeds
        Read the batch's ``latent_mean``/``latent_std`` and ``clip_embeds`` (the data module's caches)
        instead of running the VAE / CLIP every step. Cached latents are of the un-augmented image.
    val_sample_every_n_epochs, val_num_samples, val_sampler, val_num_inference_steps, val_guidance_scale
        Every n epochs (0: never) a grid (ground truth | samples) of the first val items, sampled with a few
        steps of ``val_sampler`` (a diffusers scheduler class name — default ``DPMSolverMultistepScheduler``,
        DPM-Solver++ —, ``ddim`` or ``plms``), goes to the logger.
    seed
        Seeds the validation noise (so val/loss_sd is comparable across epochs) and the sample grid.
    """

    def __init__(
        self,
        sd_model: str = SD15,
        clip_model: str = CLIP_VIT_L14,
        local_files_only: bool = False,
        encoder_dir: str | None = None,
        encoder_preset: str = "297M",
        train_encoder: bool = True,
        train_cross_attention: bool = True,
        sd_loss_weight: float = 1.0,
        clip_loss_weight: float = 1.0,
        lr: float = 5.3e-5,
        encoder_lr: float | None = None,
        weight_decay: float = 0.01,
        betas: tuple[float, float] = (0.9, 0.999),
        condition_dropout: float = 0.0,
        time_condition: bool | str = False,
        token_mapper_hidden: int | None = None,
        encoder_cls_token: bool = True,
        gradient_checkpointing: bool = False,
        use_cached_latents: bool = False,
        use_cached_clip_embeds: bool = False,
        val_sample_every_n_epochs: int = 5,
        val_num_samples: int = 4,
        val_sampler: str = DEFAULT_SAMPLER,
        val_num_inference_steps: int = 10,
        val_guidance_scale: float = 1.0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        check_trainable_settings(sd_loss_weight, clip_loss_weight, condition_dropout, train_encoder, train_cross_attention)
        if not lr > 0:
            raise ValueError(f"model.lr={lr} must be > 0")
        if encoder_lr is not None and not encoder_lr > 0:
            raise ValueError(f"model.encoder_lr={encoder_lr} must be > 0 (or null: the rate of model.lr)")
        if time_condition not in (False, True, "tokens", "condition"):
            raise ValueError(
                f"model.time_condition={time_condition!r}; choose false, true (= tokens: the pooled encoder tokens) "
                "or condition (the authors' module on the 77-token condition)"
            )
        from dreamdiffusion.generation import unet_calls

        unet_calls(val_sampler, val_num_inference_steps)  # an unknown sampler fails now, not at the first grid
        self.save_hyperparameters()
        sd = load_sd(
            sd_model,
            local_files_only=local_files_only,
            unet_overrides={"class_embed_type": "identity"} if time_condition else None,
        )
        if sd.scheduler.config.prediction_type != "epsilon":
            raise ValueError(
                f"{sd_model}/scheduler: prediction_type={sd.scheduler.config.prediction_type!r}; stage 2 trains "
                "ε-prediction (Eq. 2) like SD-1.5. Use an ε-prediction Stable Diffusion"
            )
        self.unet, self.vae, self.noise_scheduler = sd.unet, sd.vae, sd.scheduler
        self.register_buffer(
            "alphas_cumprod", sd.scheduler.alphas_cumprod.detach().clone().float(), persistent=False
        )
        if use_cached_clip_embeds:
            self.clip = None
            clip_dim = clip_projection_dim(clip_model, local_files_only=local_files_only)
        else:
            self.clip, _ = load_clip(clip_model, local_files_only=local_files_only)
            clip_dim = int(self.clip.config.projection_dim)
        self.condition_model = EEGConditionModel.from_stage1(
            encoder_dir,
            encoder_preset_config(encoder_preset),
            cross_attention_dim=int(self.unet.config.cross_attention_dim),
            clip_dim=clip_dim,
            time_embed_dim=int(self.unet.time_embedding.linear_2.out_features) if time_condition else None,
            token_mapper_hidden=token_mapper_hidden,
            time_mapper_input="tokens" if time_condition in (True, False) else time_condition,
            encoder_cls_token=encoder_cls_token,
        )
        self.trainable_names = select_trainable(
            self, train_encoder, train_cross_attention, sd_loss_weight, clip_loss_weight, condition_dropout
        )
        if gradient_checkpointing:
            self.unet.enable_gradient_checkpointing()
            self.condition_model.encoder.gradient_checkpointing = True
        self.val_retrieval = RetrievalTop1()
        self._val_grid_batch: dict | None = None

    # ----------------------------------------------------------------------------------------- set-up
    def train(self, mode: bool = True) -> EEGSDFinetuneModule:
        """Lightning switches the whole module to train mode every epoch; frozen parts stay in eval."""
        super().train(mode)
        self.vae.eval()
        if self.clip is not None:
            self.clip.eval()
        self.unet.eval()
        if mode and self.hparams.train_cross_attention:
            for name in cross_attention_module_names(self.unet):
                self.unet.get_submodule(name).train()
        if not self.hparams.train_encoder:
            self.condition_model.encoder.eval()
        return self

    def configure_optimizers(self):
        hp = self.hparams
        encoder = {id(p) for p in self.condition_model.encoder.parameters()}
        params = [p for p in self.parameters() if p.requires_grad and id(p) not in encoder]
        encoder_params = [p for p in self.condition_model.encoder.parameters() if p.requires_grad]
        groups = [{"params": params}]
        if encoder_params:
            groups.append({"params": encoder_params, "lr": hp.lr if hp.encoder_lr is None else hp.encoder_lr})
        return build_adamw(self, groups, lr=hp.lr, betas=tuple(hp.betas), weight_decay=hp.weight_decay)

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        clip_gradients(self, optimizer, gradient_clip_val, gradient_clip_algorithm)

    # ------------------------------------------------------------------------------------ the losses
    def encode_eeg(self, eeg: Tensor) -> Condition:
        """τθ(y); the frozen encoder ("A only") runs under ``no_grad``."""
        if self.hparams.train_encoder:
            return self.condition_model(eeg)
        with torch.no_grad():
            tokens = self.condition_model.encoder(eeg, with_cls=self.hparams.encoder_cls_token)
        return self.condition_model.condition_from_tokens(tokens)

    @torch.no_grad()
    def image_latents(self, batch: dict, generator: torch.Generator | None = None) -> Tensor:
        """z_0 ``[B, 4, S/8, S/8]``: a sample of the VAE posterior × ``scaling_factor``."""
        if self.hparams.use_cached_latents:
            mean = self._cached(batch, "latent_mean", "cache_latents")
            std = self._cached(batch, "latent_std", "cache_latents")
        else:
            posterior = self.vae.encode(batch["image"].to(self.vae.dtype)).latent_dist
            mean, std = posterior.mean, posterior.std
        eps = torch.randn(mean.shape, generator=generator).to(mean) if generator is not None else torch.randn_like(mean)
        return (mean + std * eps) * self.vae.config.scaling_factor

    @torch.no_grad()
    def clip_image_embeds(self, batch: dict) -> Tensor:
        """E_I(image) ``[B, clip_dim]``: CLIP ``image_embeds`` of the batch's ``clip_pixels`` (or the cache)."""
        if self.hparams.use_cached_clip_embeds:
            return self._cached(batch, "clip_embeds", "cache_clip_embeds")
        return self.clip(pixel_values=batch["clip_pixels"].to(self.clip.dtype)).image_embeds

    def _cached(self, batch: dict, key: str, data_option: str) -> Tensor:
        if key not in batch:
            raise KeyError(
                f"the batch has no {key!r} although model.use_cached_{'latents' if 'latent' in key else 'clip_embeds'}"
                f"=true; set data.init_args.{data_option}: true (or turn the model option off)"
            )
        return batch[key]

    def sd_loss(self, latents: Tensor, condition: Condition, generator: torch.Generator | None = None) -> Tensor:
        """Eq. 2: ε-prediction MSE at t ~ U[0, num_train_timesteps), DDPM forward process."""
        b = latents.shape[0]
        n_steps = int(self.noise_scheduler.config.num_train_timesteps)
        if generator is None:
            noise = torch.randn_like(latents)
            t = torch.randint(0, n_steps, (b,), device=latents.device)
        else:  # validation: the same noise and timesteps every epoch
            noise = torch.randn(latents.shape, generator=generator).to(latents)
            t = torch.randint(0, n_steps, (b,), generator=generator).to(latents.device)
        abar = self.alphas_cumprod.to(latents.device)[t].view(b, 1, 1, 1)
        noisy = abar.sqrt() * latents + (1 - abar).sqrt() * noise
        pred = self.unet(
            noisy, t, encoder_hidden_states=condition.hidden_states, class_labels=condition.time_vector
        ).sample
        return F.mse_loss(pred.float(), noise.float())

    def drop_condition(self, condition: Condition) -> Condition:
        """With probability ``condition_dropout`` per item, the learned null condition (time vector 0)."""
        p = self.hparams.condition_dropout
        if p == 0:
            return condition
        b = condition.hidden_states.shape[0]
        drop = torch.rand(b, device=condition.hidden_states.device) < p
        hidden = torch.where(drop.view(b, 1, 1), self.condition_model.null(b).to(condition.hidden_states), condition.hidden_states)
        time_vector = condition.time_vector
        if time_vector is not None:
            time_vector = torch.where(drop.view(b, 1), torch.zeros_like(time_vector), time_vector)
        return Condition(condition.tokens, hidden, time_vector)

    def losses(self, batch: dict, generator: torch.Generator | None = None, train: bool = True) -> dict[str, Tensor]:
        """``loss``, ``loss_sd``, ``loss_clip`` (and ``predicted``/``target`` CLIP embeddings) for a batch."""
        hp = self.hparams
        condition = self.encode_eeg(batch["eeg"])
        out: dict[str, Tensor] = {}
        total = 0.0
        if hp.sd_loss_weight > 0 or not train:
            sd_condition = self.drop_condition(condition) if train else condition
            out["loss_sd"] = self.sd_loss(self.image_latents(batch, generator), sd_condition, generator)
            total = total + hp.sd_loss_weight * out["loss_sd"]
        if hp.clip_loss_weight > 0 or not train:
            out["predicted"] = self.condition_model.clip_embedding(condition.tokens)
            out["target"] = self.clip_image_embeds(batch)
            out["loss_clip"] = clip_loss(out["predicted"], out["target"])
            total = total + hp.clip_loss_weight * out["loss_clip"]
        out["loss"] = total
        return out

    # ------------------------------------------------------------------------------------- training
    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        out = self.losses(batch)
        b = batch["eeg"].shape[0]
        for key in ("loss", "loss_sd", "loss_clip"):
            if key in out:
                self.log(f"train/{key}", out[key], prog_bar=key == "loss", batch_size=b)
        return out["loss"]

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        generator = torch.Generator().manual_seed(self.hparams.seed * 100_003 + batch_idx)
        out = self.losses(batch, generator=generator, train=False)
        b = batch["eeg"].shape[0]
        for key in ("loss", "loss_sd", "loss_clip"):
            self.log(f"val/{key}", out[key], prog_bar=key == "loss", sync_dist=True, batch_size=b)
        self.val_retrieval.update(out["predicted"].detach(), out["target"].detach(), image_ids(list(batch["image_name"]), self.device))
        if batch_idx == 0:
            n = self.hparams.val_num_samples
            self._val_grid_batch = {"eeg": batch["eeg"][:n].detach(), "image": batch["image"][:n].detach()}

    def on_validation_epoch_end(self) -> None:
        if self.val_retrieval.image.update_count:
            top1, _ = self.val_retrieval.compute()  # gathered from every process
            self.log("val/retrieval_top1", top1, prog_bar=True)
        self.val_retrieval.reset()
        every = self.hparams.val_sample_every_n_epochs
        grid_due = every > 0 and (self.current_epoch + 1) % every == 0 and not self.trainer.sanity_checking
        if grid_due and self._val_grid_batch is not None and self.trainer.is_global_zero:
            experiment = getattr(self.logger, "experiment", None)
            if experiment is not None and hasattr(experiment, "add_image"):
                experiment.add_image("val/samples", self.sample_grid(**self._val_grid_batch), self.global_step)
        self._val_grid_batch = None

    @torch.no_grad()
    def sample_grid(self, eeg: Tensor, image: Tensor) -> Tensor:
        """``[3, H, W]`` in [0, 1]: row i = ground truth i | a sample for EEG i (few ``val_sampler`` steps)."""
        from torchvision.utils import make_grid

        from dreamdiffusion.generation import generate_images

        hp = self.hparams
        condition = self.condition_model(eeg)
        null = self.condition_model.null(eeg.shape[0]) if hp.condition_dropout > 0 else None
        samples = generate_images(
            self.unet, self.vae, self.noise_scheduler.config, condition, null,
            sampler=hp.val_sampler, num_inference_steps=hp.val_num_inference_steps, guidance_scale=hp.val_guidance_scale,
            seeds=[hp.seed + i for i in range(eeg.shape[0])],
        )
        truth = ((image.float() + 1) / 2).clamp(0, 1)
        truth = F.interpolate(truth, size=samples.shape[-2:], mode="bilinear", align_corners=False)
        pairs = torch.stack([truth, samples.float().to(truth.device)], dim=1).flatten(0, 1)
        return make_grid(pairs.cpu(), nrow=2, padding=2)

    # ------------------------------------------------------------------ checkpoints and the export
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Leave out the frozen UNet/VAE/CLIP weights: they come back from ``sd_model``/``clip_model``."""
        finetune_export.drop_frozen_weights(checkpoint["state_dict"], set(self.trainable_names))

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Put the frozen weights (already loaded from their sources) back, so loading stays strict."""
        finetune_export.restore_frozen_weights(checkpoint["state_dict"], self.state_dict(), set(self.trainable_names))

    def load_trainable_from_checkpoint(self, path: str | Path) -> None:
        """Load a Lightning checkpoint of this module (e.g. the best one) into it, strictly."""
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        if "state_dict" not in checkpoint:
            raise ValueError(f"{path} is not a Lightning checkpoint (no 'state_dict')")
        self.on_load_checkpoint(checkpoint)
        self.load_state_dict(checkpoint["state_dict"], strict=True)

    @property
    def export_dir(self) -> Path:
        """The stage folder: ``trainer.default_root_dir`` (``<run_dir>/finetune`` in the configs)."""
        return Path(self.trainer.default_root_dir)

    def on_fit_end(self) -> None:
        """Rank 0 writes ``pipeline/`` and ``export.json`` (:func:`~dreamdiffusion.stages.finetune_export.export_at_fit_end`)."""
        if self.trainer.is_global_zero:
            finetune_export.export_at_fit_end(self)

    def export_pipeline(self, folder: str | Path, metrics: dict[str, float] | None = None) -> Path:
        """Write the :class:`~dreamdiffusion.pipeline.DreamDiffusionPipeline` folder (atomically) with DPM-Solver++
        on the training noise schedule as its sampler and a model card
        (:func:`~dreamdiffusion.stages.finetune_export.export_pipeline`)."""
        return finetune_export.export_pipeline(self, folder, metrics)
