"""The pictures of the synthetic twins: one shape and hue per class, everything else varied per picture.

:func:`synth_image` draws one RGB picture of class ``label`` from the ``numpy`` generator it is given (in a
fixed order), so a seeded stream always gives the same pixels. Class ``k`` has its own shape
(``SHAPES[k % 10]``) and hue; each picture varies in size (``min_image_side``–``max_image_side`` px per side),
position and scale of the shape, rotation, background colour and texture noise.

Who draws from which stream is the writers' business: the ImageNet-EEG twin's pictures and the pictures of
the demo's own models (:func:`dreamdiffusion.data.synthetic.dataset_pictures`,
:func:`dreamdiffusion.data.synthetic.own_pictures`), the THINGS-EEG2 twin
(:mod:`dreamdiffusion.data.things_eeg2_synthetic`) and the tiny CLIP warm-up
(:mod:`dreamdiffusion.models.tiny_clip_warmup`).
"""

from __future__ import annotations

import colorsys
import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import PIL.Image

    from dreamdiffusion.data.synthetic import SyntheticConfig

SHAPES = ("circle", "square", "triangle", "diamond", "star", "cross", "ring", "hexagon", "bars", "crescent")


def _shape_points(shape: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    """Polygon vertices (px) of ``shape`` of radius ``r`` centred at ``(cx, cy)``, turned by ``angle`` rad."""
    def polygon(n: int, radii: list[float], offset: float = 0.0):
        pts = []
        for i in range(n * len(radii)):
            a = angle + offset + 2 * math.pi * i / (n * len(radii))
            rr = r * radii[i % len(radii)]
            pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
        return pts

    if shape == "square":
        return polygon(4, [1.0], math.pi / 4)
    if shape == "triangle":
        return polygon(3, [1.0], -math.pi / 2)
    if shape == "diamond":
        return polygon(2, [1.0, 0.55])
    if shape == "star":
        return polygon(5, [1.0, 0.45], -math.pi / 2)
    if shape == "hexagon":
        return polygon(6, [1.0])
    if shape == "cross":
        return polygon(4, [1.0, 0.38, 0.38, 1.0], 0.3)
    raise ValueError(shape)


def synth_image(rng: np.random.Generator, label: int, classes: int, cfg: SyntheticConfig) -> PIL.Image.Image:
    """A ``PIL.Image`` (RGB, sides in [``cfg.min_image_side``, ``cfg.max_image_side``] px) of class ``label`` of
    ``classes``; only those two fields of ``cfg`` are read."""
    from PIL import Image, ImageDraw

    width = int(rng.integers(cfg.min_image_side, cfg.max_image_side + 1))
    height = int(rng.integers(cfg.min_image_side, cfg.max_image_side + 1))
    hue = (label * 0.618034) % 1.0 if classes > len(SHAPES) else label / max(classes, 1)
    colour = colorsys.hsv_to_rgb(hue, rng.uniform(0.75, 1.0), rng.uniform(0.75, 1.0))
    background = colorsys.hsv_to_rgb(rng.uniform(0, 1), rng.uniform(0.0, 0.25), rng.uniform(0.15, 0.9))
    pixels = np.asarray(background)[None, None] * 255 + rng.normal(0, 12, size=(height, width, 3))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    shape = SHAPES[label % len(SHAPES)]
    r = rng.uniform(0.22, 0.38) * min(width, height)
    cx, cy = rng.uniform(r, width - r), rng.uniform(r, height - r)
    angle = rng.uniform(-0.3, 0.3)
    fill = tuple(int(255 * v) for v in colour)
    box = (cx - r, cy - r, cx + r, cy + r)
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "ring":
        draw.ellipse(box, outline=fill, width=max(2, int(r * 0.35)))
    elif shape == "bars":
        for i in range(3):
            x0 = cx - r + i * (2 * r / 3)
            draw.rectangle((x0, cy - r, x0 + 0.5 * (2 * r / 3), cy + r), fill=fill)
    elif shape == "crescent":
        draw.ellipse(box, fill=fill)
        shift = 0.45 * r
        draw.ellipse((cx - r + shift, cy - r - 0.1 * r, cx + r + shift, cy + r - 0.1 * r), fill=tuple(int(255 * v) for v in background))
    else:
        draw.polygon(_shape_points(shape, cx, cy, r, angle), fill=fill)
    return image
