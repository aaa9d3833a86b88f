"""Per-image caches of frozen-model outputs: CLIP image embeddings and VAE latents.

The CLIP image tower and the VAE are frozen in stage 2, and the images they see for these caches are
un-augmented, so their outputs never change during training: computing them once saves a CLIP and a
VAE forward pass per item and epoch.

A cache is a folder ``<cache_dir>/<kind>-<key>/`` holding ``<kind>.safetensors`` (one row per image,
rows in ``manifest.json``'s ``names`` order) and ``manifest.json``, written together atomically (the
manifest says the folder is complete). ``<key>`` is a digest of the model that made it — its
fingerprint (:func:`dreamdiffusion.models.backbones.clip_fingerprint` or :func:`vae_fingerprint`),
the SHA-256 of its weight files, and the preprocessing (CLIP processor config, image size) — and of
the set of image names, so two models (or two subjects' image sets) never share or overwrite a cache. The
manifest also records the data it came from (the EEG file and every image: size and modification time in ns);
a cache whose model or data differ is a miss and is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import torch

from dreamdiffusion import progress
from dreamdiffusion.atomic import atomic_dir, sha256
from dreamdiffusion.data.images import read_image, to_tensor

CLIP_EMBEDS = "clip_embeds"
VAE_LATENTS = "vae_latents"
FORMAT_VERSION = 1


def _weights_digest(folder: Path) -> dict[str, str]:
    files = sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin"))
    return {f.name: sha256(f) for f in files}


def vae_fingerprint(source: str) -> str:
    """A string that changes when the VAE of a Stable Diffusion folder (or hub id) changes."""
    from dreamdiffusion.models.backbones import model_fingerprint

    return model_fingerprint(source, "vae")


def clip_model_key(clip_model: str) -> dict:
    """What identifies CLIP image embeddings: model fingerprint, weight digests, processor settings."""
    from dreamdiffusion.models.backbones import clip_fingerprint

    key = {"kind": CLIP_EMBEDS, "version": FORMAT_VERSION, "fingerprint": clip_fingerprint(clip_model)}
    root = Path(clip_model)
    if root.is_dir():
        key["weights_sha256"] = _weights_digest(root)
        processor = root / "preprocessor_config.json"
        key["processor"] = json.loads(processor.read_text()) if processor.is_file() else None
    return key


def vae_model_key(sd_model: str, image_size: int) -> dict:
    """What identifies VAE latents: VAE fingerprint, weight digests, image side in pixels."""
    key = {"kind": VAE_LATENTS, "version": FORMAT_VERSION, "fingerprint": vae_fingerprint(sd_model), "image_size": image_size}
    root = Path(sd_model) / "vae"
    if root.is_dir():
        key["weights_sha256"] = _weights_digest(root)
    return key


def data_state(eeg_path: str | os.PathLike, images: dict[str, Path]) -> dict:
    """The files a cache came from: the EEG file (by name) and each image, as ``[size, mtime_ns]``.

    Content, not location: a moved or renamed run folder keeps its caches (``mv`` keeps mtimes).
    """

    def stat(path: Path) -> list[int]:
        s = Path(path).stat()
        return [s.st_size, s.st_mtime_ns]

    return {
        "eeg_file": [Path(eeg_path).name, *stat(Path(eeg_path))],
        "images": {name: stat(path) for name, path in sorted(images.items())},
    }


def cache_folder(cache_dir: str | os.PathLike, model_key: dict, names: list[str]) -> Path:
    """``<cache_dir>/<kind>-<digest of the model key and the image names>``: one folder per model and image set."""
    digest = hashlib.sha256(json.dumps([model_key, sorted(names)], sort_keys=True).encode()).hexdigest()[:16]
    return Path(cache_dir) / f"{model_key['kind']}-{digest}"


def read_cache(folder: Path, model_key: dict, data: dict) -> dict[str, torch.Tensor] | None:
    """The cached tensors (rows in ``data['images']`` name order), or ``None`` when absent or stale."""
    from safetensors.torch import load_file

    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        return None
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("model") != model_key or manifest.get("data") != data:
        return None
    return load_file(folder / f"{model_key['kind']}.safetensors")


def write_cache(folder: Path, tensors: dict[str, torch.Tensor], model_key: dict, data: dict) -> None:
    """Write tensors and manifest into ``folder`` atomically (replacing a stale cache)."""
    from safetensors.torch import save_file

    with atomic_dir(folder) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, tmp / f"{model_key['kind']}.safetensors")
        manifest = {"model": model_key, "data": data, "names": sorted(data["images"]),
                    "tensors": {k: list(v.shape) for k, v in tensors.items()}}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def _batches(names: list[str], size: int):
    for start in range(0, len(names), size):
        yield names[start : start + size]


@torch.no_grad()
def compute_clip_embeds(
    clip_model: str, images: dict[str, Path], local_files_only: bool, device: str, batch_size: int = 32
) -> dict[str, torch.Tensor]:
    """``{"clip_embeds": [N, projection_dim]}``: CLIP ``image_embeds`` (not normalised) of each un-augmented image."""
    from dreamdiffusion.models.backbones import load_clip

    model, processor = load_clip(clip_model, local_files_only=local_files_only)
    model = model.to(device).eval()
    names = sorted(images)
    rows = []
    with progress.bar(total=len(names), desc="CLIP embeddings cache", unit="image") as bar:
        for batch in _batches(names, batch_size):
            pixels = processor(images=[read_image(images[n]) for n in batch], return_tensors="pt").pixel_values
            rows.append(model(pixel_values=pixels.to(device)).image_embeds.float().cpu())
            bar.update(len(batch))
    return {"clip_embeds": torch.cat(rows)}


@torch.no_grad()
def compute_vae_latents(
    sd_model: str, images: dict[str, Path], image_size: int, local_files_only: bool, device: str, batch_size: int = 8
) -> dict[str, torch.Tensor]:
    """``{"latent_mean", "latent_std": [N, 4, S/8, S/8]}``: the VAE posterior of each un-augmented image (unscaled)."""
    from diffusers import AutoencoderKL

    from dreamdiffusion.models.backbones import _check_local, low_cpu_mem_usage

    _check_local(sd_model, ["vae/config.json"], "Stable Diffusion")
    vae = AutoencoderKL.from_pretrained(
        sd_model, subfolder="vae", local_files_only=local_files_only, low_cpu_mem_usage=low_cpu_mem_usage()
    ).to(device).eval()
    names = sorted(images)
    means, stds = [], []
    with progress.bar(total=len(names), desc="VAE latents cache", unit="image") as bar:
        for batch in _batches(names, batch_size):
            pixels = torch.stack([to_tensor(read_image(images[n]), image_size) for n in batch]).to(device)
            posterior = vae.encode(pixels).latent_dist
            means.append(posterior.mean.float().cpu())
            stds.append(posterior.std.float().cpu())
            bar.update(len(batch))
    return {"latent_mean": torch.cat(means), "latent_std": torch.cat(stds)}


def ensure_cache(
    cache_dir: str | os.PathLike, model_key: dict, data: dict, compute: Callable[[], dict[str, torch.Tensor]]
) -> tuple[Path, bool]:
    """Make sure a fresh cache exists: ``(folder, True)`` if it was already there, else compute and write it."""
    folder = cache_folder(cache_dir, model_key, list(data["images"]))
    if read_cache(folder, model_key, data) is not None:
        return folder, True
    write_cache(folder, compute(), model_key, data)
    return folder, False


def load_cache(cache_dir: str | os.PathLike, model_key: dict, data: dict) -> dict[str, torch.Tensor]:
    """The fresh cache for ``model_key`` and ``data``; an error (naming the folder) if it is absent or stale."""
    folder = cache_folder(cache_dir, model_key, list(data["images"]))
    tensors = read_cache(folder, model_key, data)
    if tensors is None:
        raise FileNotFoundError(
            f"the {model_key['kind']} cache {folder} is missing or was made from other data or another model; "
            "it is written by the data module's prepare_data (the Trainer calls it before setup): run through "
            "the Trainer or call prepare_data() first"
        )
    return tensors
