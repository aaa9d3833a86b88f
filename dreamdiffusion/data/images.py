"""ImageNet pictures of the paired data: find them, read them, turn them into model input.

Images live at ``<image_root>/<wnid>/<name>.JPEG`` (any case of the extension: ``.JPEG``, ``.jpeg``,
``.Jpeg`` ...). A missing or unreadable picture is an error that names its path; there is no
substitute picture, ever.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

IMAGE_SUFFIX = ".jpeg"  # compared lower-cased
KNOWN_CORRUPT = "n03452741_17620"  # the one image of the release reported as corrupt


class ImageReadError(ValueError):
    """An image file exists but cannot be decoded."""


def expected_path(image_root: str | os.PathLike, name: str) -> Path:
    """Where image ``name`` (``<wnid>_<n>``) should be: ``<image_root>/<wnid>/<name>.JPEG``."""
    return Path(image_root) / name.split("_")[0] / f"{name}.JPEG"


def find_images(image_root: str | os.PathLike, names: list[str]) -> tuple[dict[str, Path], list[str]]:
    """Paths of ``names`` under ``image_root`` (each class folder listed once) and the names not found.

    Returns ``(found {name: path}, missing [name])``; a name matches ``<name>.<ext>`` with
    ``ext.lower() == "jpeg"``.
    """
    root = Path(image_root)
    if not root.is_dir():
        raise FileNotFoundError(
            f"image folder {root} does not exist; it must hold ImageNet train images as <wnid>/<name>.JPEG "
            "(see data/README.md, section ImageNet-EEG)"
        )
    listings: dict[str, dict[str, Path]] = {}
    found, missing = {}, []
    for name in names:
        wnid = name.split("_")[0]
        if wnid not in listings:
            folder = root / wnid
            entries = {}
            if folder.is_dir():
                for entry in os.scandir(folder):
                    stem, suffix = os.path.splitext(entry.name)
                    if suffix.lower() == IMAGE_SUFFIX:
                        entries[stem] = Path(entry.path)
            listings[wnid] = entries
        path = listings[wnid].get(name)
        if path is None:
            missing.append(name)
        else:
            found[name] = path
    return found, missing


def missing_images_error(image_root: str | os.PathLike, missing: list[str]) -> FileNotFoundError:
    shown = ", ".join(str(expected_path(image_root, n)) for n in missing[:5])
    more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
    return FileNotFoundError(
        f"{len(missing)} image(s) of the split are missing: {shown}{more}. Put the ImageNet train images under "
        f"{image_root}/<wnid>/<name>.JPEG (see data/README.md); `dreamdiffusion data check-imagenet-eeg` lists them all"
    )


def read_image(path: str | os.PathLike):
    """The picture at ``path`` as an RGB ``PIL.Image``, fully decoded; :class:`ImageReadError` if it cannot be."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()
            return image.convert("RGB")
    except (OSError, SyntaxError, ValueError) as err:
        hint = " (a known corrupt file of the release)" if Path(path).stem == KNOWN_CORRUPT else ""
        raise ImageReadError(
            f"image {path} is unreadable{hint}: {type(err).__name__}: {err}. Replace it with a good copy from "
            "image-net.org; `dreamdiffusion data check-imagenet-eeg` lists every unreadable image"
        ) from None


def to_tensor(image, size: int) -> torch.Tensor:
    """``PIL.Image`` -> ``[3, size, size]`` float32 in [-1, 1] (whole picture, bicubic, aspect not kept)."""
    import numpy as np
    from PIL import Image

    resized = image.resize((size, size), Image.Resampling.BICUBIC)
    pixels = torch.from_numpy(np.array(resized, dtype=np.uint8)).permute(2, 0, 1)
    return pixels.float().div_(127.5).sub_(1.0)


def random_crop(image, fraction: float, generator: torch.Generator | None = None):
    """A crop of ``fraction`` of each side of ``image`` at a uniformly random position."""
    width, height = image.size
    w, h = max(1, round(fraction * width)), max(1, round(fraction * height))
    left = int(torch.randint(0, width - w + 1, (1,), generator=generator))
    top = int(torch.randint(0, height - h + 1, (1,), generator=generator))
    return image.crop((left, top, left + w, top + h))




def jpeg_round_trip(image, quality: int = 90):
    """``image`` as it reads back after being saved as JPEG at ``quality`` (how the datasets store pictures)."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return decoded.convert("RGB")


def stored_pictures_tensor(pictures: list, size: int, quality: int = 90) -> torch.Tensor:
    """PIL pictures → ``[N, 3, size, size]`` float32 in [-1, 1], each as stage 2 would read it from a JPEG
    file of ``quality`` (:func:`jpeg_round_trip`, then :func:`to_tensor`)."""
    return torch.stack([to_tensor(jpeg_round_trip(p, quality), size) for p in pictures])
