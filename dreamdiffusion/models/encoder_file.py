"""The stage-1 artifact: ``encoder.safetensors`` + ``encoder.json``.

``encoder.json`` holds the :class:`~dreamdiffusion.models.mae.MAEConfig`, the preset name, the
masking settings and the SHA-256 of the weights file; the old JSON is removed, the weights are written,
then the new JSON, each atomically, so a JSON that exists always describes the weights beside it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from safetensors.torch import load_file

from dreamdiffusion.atomic import sha256, write_safetensors, write_text
from dreamdiffusion.models.mae import EEGEncoder, MAEConfig
from dreamdiffusion.models.strict_load import load_strict

WEIGHTS = "encoder.safetensors"
CONFIG = "encoder.json"
FORMAT = "dreamdiffusion.eeg_encoder/1"


def save_encoder(encoder: EEGEncoder, folder: str | os.PathLike, **info) -> Path:
    """Write ``encoder`` to ``folder`` (created if needed); ``info`` goes into the JSON (e.g. preset, mask_ratio)."""
    folder = Path(folder)
    state = {k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}
    # The old description goes first: a run killed between the two writes leaves weights without a JSON
    # (refused as "no encoder"), never a JSON that describes other weights.
    (folder / CONFIG).unlink(missing_ok=True)
    digest = write_safetensors(folder / WEIGHTS, state, metadata={"format": FORMAT})
    meta = {"format": FORMAT, "config": encoder.config.to_dict(), "sha256": digest, **info}
    write_text(folder / CONFIG, json.dumps(meta, indent=2) + "\n")
    return folder


def read_encoder_config(folder: str | os.PathLike) -> dict:
    """The parsed ``encoder.json`` of ``folder``, with a clear error if it is absent or not ours."""
    path = Path(folder) / CONFIG
    if not path.is_file():
        raise FileNotFoundError(
            f"no stage-1 encoder in {folder}: {CONFIG} is missing. Run stage 1 first "
            "(`dreamdiffusion fit -c configs/pretrain.yaml`) or point the config at the folder holding "
            f"{WEIGHTS} and {CONFIG}"
        )
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); re-export the encoder from stage 1") from None
    if meta.get("format") != FORMAT or "config" not in meta:
        raise ValueError(f"{path} is not a dreamdiffusion encoder description (expected format {FORMAT!r})")
    return meta


def load_encoder(folder: str | os.PathLike, expected: MAEConfig | None = None) -> EEGEncoder:
    """Rebuild the encoder stored in ``folder``.

    ``expected``: the architecture the caller needs; a file written for another one is refused with
    both shapes named. Weights that do not match their JSON (other keys, other shapes, other
    checksum) are refused too: nothing is loaded partially.
    """
    folder = Path(folder)
    meta = read_encoder_config(folder)
    try:
        config = MAEConfig.from_dict(meta["config"])
    except TypeError as e:
        raise ValueError(f"{folder / CONFIG}: the encoder config has unknown fields ({e})") from None
    if expected is not None and config != expected:
        diff = {
            k: (v, getattr(expected, k)) for k, v in config.to_dict().items() if getattr(expected, k) != v
        }
        raise ValueError(
            f"the encoder in {folder} (preset {meta.get('preset', '?')!r}) does not match the configured "
            f"architecture: {', '.join(f'{k}={a} in the file but {b} expected' for k, (a, b) in diff.items())}. "
            "Point the config at the stage-1 run of the same preset, or change the preset"
        )
    weights = folder / WEIGHTS
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} is missing although {CONFIG} is there; re-run the stage-1 export")
    if sha256(weights) != meta.get("sha256"):
        raise ValueError(
            f"{weights} does not match the checksum in {folder / CONFIG}: the two files come from "
            "different exports or the weights are damaged; re-run the stage-1 export"
        )
    encoder = EEGEncoder(config)
    load_strict(encoder, load_file(str(weights)), str(weights), f"it does not fit the encoder described in {CONFIG}")
    return encoder
