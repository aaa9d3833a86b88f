"""The demo base model's class captions: the stand-in for SD's text-encoder output of a class name.

Stored beside the base model (``<sd>/captions/``)::

    captions.safetensors   {"captions": float32 [K, 77, cross_attention_dim], "empty": [1, 77, D]}   metadata: provenance
    captions.json          {"class_names": [wnid, ...], "tokens": 77, "cross_attention_dim": D}

Sampling the base model "from class captions" (:func:`sample_from_captions`) is drawing with SD from a
prompt; :func:`caption_sample_accuracy` checks that the base model draws each class recognisably.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

CAPTIONS_FILE = "captions.safetensors"
CAPTIONS_JSON = "captions.json"


def save_captions(
    folder: str | os.PathLike, captions: Tensor, class_names: list[str], provenance: str, empty: Tensor | None = None
) -> Path:
    """Write ``captions [K, 77, D]``, the empty caption ``[1, 77, D]`` (classifier-free guidance) and the class
    names (``K`` of them) to ``folder``."""
    from safetensors.torch import save_file

    from dreamdiffusion.atomic import atomic_path, write_text

    if captions.ndim != 3 or captions.shape[0] != len(class_names):
        raise ValueError(f"captions of shape {tuple(captions.shape)} do not fit {len(class_names)} class names")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / CAPTIONS_FILE) as tmp:
        tensors = {"captions": captions.float().contiguous()}
        if empty is not None:
            tensors["empty"] = empty.float().contiguous()
        save_file(tensors, str(tmp), metadata={"provenance": provenance})
    meta = {"class_names": class_names, "tokens": captions.shape[1], "cross_attention_dim": captions.shape[2]}
    write_text(folder / CAPTIONS_JSON, json.dumps(meta, indent=2) + "\n")
    return folder


def load_captions(sd_folder: str | os.PathLike) -> tuple[Tensor, list[str]]:
    """``(captions [K, 77, D], class names)`` of a base model folder written by ``dreamdiffusion weights demo``
    (:func:`load_empty_caption` gives its empty caption)."""
    from safetensors.torch import load_file

    folder = Path(sd_folder) / "captions"
    if not (folder / CAPTIONS_FILE).is_file() or not (folder / CAPTIONS_JSON).is_file():
        raise FileNotFoundError(
            f"{folder} holds no {CAPTIONS_FILE} + {CAPTIONS_JSON}: only a base model trained by "
            "`dreamdiffusion weights demo` has class captions (SD-1.5 is prompted with text instead)"
        )
    captions = load_file(str(folder / CAPTIONS_FILE))["captions"]
    names = json.loads((folder / CAPTIONS_JSON).read_text())["class_names"]
    if captions.shape[0] != len(names):
        raise ValueError(f"{folder}: {captions.shape[0]} captions but {len(names)} class names; rewrite it")
    return captions, names


def load_empty_caption(sd_folder: str | os.PathLike) -> Tensor:
    """The empty caption ``[1, 77, D]`` (the unconditional input of classifier-free guidance)."""
    from safetensors import safe_open

    path = Path(sd_folder) / "captions" / CAPTIONS_FILE
    with safe_open(str(path), framework="pt") as f:
        if "empty" not in f.keys():
            raise ValueError(f"{path} holds no empty caption: the base model was trained without caption dropout")
        return f.get_tensor("empty")


def sample_from_captions(
    sd_folder: str | os.PathLike, labels: Sequence[int], seeds: Sequence[int], num_inference_steps: int = 20,
    guidance_scale: float = 1.0,
) -> Tensor:
    """Images ``[N, 3, S, S]`` in [0, 1] drawn by the base model at ``sd_folder`` (loaded by ``load_sd``) from
    the captions of ``labels`` (DDIM, η = 0; item ``i``'s noise from ``seeds[i]``), with classifier-free guidance
    against the empty caption when ``guidance_scale != 1`` (as SD is sampled from a prompt)."""
    from dreamdiffusion.generation import generate_images
    from dreamdiffusion.models.backbones import load_sd
    from dreamdiffusion.models.condition import Condition

    captions, _ = load_captions(sd_folder)
    sd = load_sd(str(sd_folder), local_files_only=True)
    sd.unet.eval()
    sd.vae.eval()
    condition = Condition(tokens=None, hidden_states=captions[torch.as_tensor(list(labels))], time_vector=None)
    empty = load_empty_caption(sd_folder).expand(len(labels), -1, -1) if guidance_scale != 1.0 else None
    return generate_images(
        sd.unet, sd.vae, sd.scheduler.config, condition, empty,
        sampler="ddim", num_inference_steps=num_inference_steps, guidance_scale=guidance_scale, seeds=list(seeds),
    )


def caption_sample_accuracy(
    sd_folder: str | os.PathLike, classifier, samples_per_class: int = 10, num_inference_steps: int = 20, seed: int = 0,
    guidance_scale: float = 1.0,
) -> tuple[float, Tensor, Tensor]:
    """Share of the base model's caption samples that ``classifier`` (images in [0, 1] → probabilities)
    puts in the captioned class; returns ``(accuracy, images [N, 3, S, S], labels [N])``, class after class."""
    from dreamdiffusion.generation import derive_seed

    captions, _ = load_captions(sd_folder)
    labels = torch.arange(captions.shape[0]).repeat_interleave(samples_per_class)
    seeds = [derive_seed(seed, i) for i in range(len(labels))]
    images = sample_from_captions(sd_folder, labels.tolist(), seeds, num_inference_steps, guidance_scale)
    predicted = classifier(images).argmax(dim=1)
    return float((predicted == labels).float().mean()), images, labels
