"""A contrastive warm-up that gives the demo's tiny CLIP image tower informative embeddings.

A randomly initialised ``CLIPVisionModelWithProjection`` maps every picture to almost the same direction:
on the synthetic twin's 50 pictures (default size) the tiny tower's image embeddings have a mean pairwise
cosine of 0.76 and a leave-one-out nearest-class-centroid accuracy of 18% (chance 10%). The real CLIP
ViT-L/14 separates ImageNet classes because it was pre-trained on image–text pairs; the CLIP loss (Eq. 3)
and EEG→CLIP retrieval only mean something against such an embedding.

:func:`warm_up_tiny_clip` is the tiny stand-in for that pre-training, CLIP's own objective at toy scale:
a one-sided InfoNCE (image → captions) between image embeddings and one learned "caption" embedding
per class (the class name's text embedding, which a tiny model has no tokenizer for), on a **separate
corpus of synthetic pictures** drawn by :func:`dreamdiffusion.data.synthetic_pictures.synth_image` from a random
stream of its own. None of the pictures of a synthetic ImageNet-EEG dataset (train, val or test) is
ever seen: like the real CLIP, the tower knows what the classes look like from other pictures.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

# The warm-up corpus's random stream: np.random.default_rng([seed, CORPUS_STREAM]). The synthetic dataset
# draws its pictures from default_rng([seed, 4]), so the two never share a picture.
CORPUS_STREAM = 0x434C4950  # "CLIP"


@dataclass(frozen=True)
class ClipWarmup:
    """Settings of :func:`warm_up_tiny_clip`.

    ``classes`` must equal the synthetic dataset's class count (a class's shape and hue depend on it);
    ``pictures_per_class`` pictures of each class form the corpus; ``steps`` AdamW steps of ``batch_size``
    pictures at learning rate ``lr``; ``temperature`` divides the cosine logits.
    """

    classes: int
    pictures_per_class: int = 20
    steps: int = 150
    batch_size: int = 64
    lr: float = 3e-3
    temperature: float = 0.1
    seed: int = 0


def warmup_corpus(warmup: ClipWarmup) -> tuple[list, torch.Tensor]:
    """``(pictures, labels [N])``: ``pictures_per_class`` PIL pictures of each class, class-major."""
    from dreamdiffusion.data.synthetic import SyntheticConfig
    from dreamdiffusion.data.synthetic_pictures import synth_image

    if warmup.classes < 2:
        raise ValueError(f"clip warm-up classes={warmup.classes}: a contrastive warm-up needs at least 2 classes")
    rng = np.random.default_rng([warmup.seed, CORPUS_STREAM])
    cfg = SyntheticConfig(classes=warmup.classes)
    pictures = [synth_image(rng, k, warmup.classes, cfg) for k in range(warmup.classes) for _ in range(warmup.pictures_per_class)]
    return pictures, torch.arange(warmup.classes).repeat_interleave(warmup.pictures_per_class)


def warmup_provenance(warmup: ClipWarmup) -> str:
    """What a warmed-up tower was trained on (the ``provenance`` metadata of its weights file)."""
    return (
        f"tiny CLIP warm-up: {warmup.steps} contrastive steps on {warmup.classes * warmup.pictures_per_class} synthetic "
        f"pictures ({warmup.classes} classes) drawn from default_rng([{warmup.seed}, {CORPUS_STREAM}]), none from a "
        "synthetic dataset"
    )


def warm_up_tiny_clip(model, processor, warmup: ClipWarmup) -> list[float]:
    """Train ``model`` (a ``CLIPVisionModelWithProjection``) in place; returns the loss of every step.

    Loss: cross-entropy of ``cos(image_embeds, caption_k) / temperature`` over the classes k, with one
    learned caption embedding per class (discarded afterwards). The model is left in eval mode.
    """
    pictures, labels = warmup_corpus(warmup)
    pixels = processor(images=pictures, return_tensors="pt").pixel_values
    generator = torch.Generator().manual_seed(warmup.seed)
    captions = torch.nn.Parameter(torch.randn(warmup.classes, model.config.projection_dim, generator=generator))
    optimiser = torch.optim.AdamW(list(model.parameters()) + [captions], lr=warmup.lr)
    model.train()
    losses = []
    for _ in range(warmup.steps):
        batch = torch.randperm(len(labels), generator=generator)[: warmup.batch_size]
        embeds = F.normalize(model(pixel_values=pixels[batch]).image_embeds, dim=-1)
        logits = embeds @ F.normalize(captions, dim=-1).T / warmup.temperature
        loss = F.cross_entropy(logits, labels[batch])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    model.eval()
    return losses
