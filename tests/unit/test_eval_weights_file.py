"""A damaged evaluation weights file is an error that names it, not a bare SafetensorError."""

import pytest
import torch
from safetensors.torch import save_file

from dreamdiffusion.models.eval_weights import read_state_dict


def test_a_truncated_safetensors_file_is_named(tmp_path):
    path = tmp_path / "inception.safetensors"
    save_file({"w": torch.zeros(64, 64)}, str(path))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match=rf"Inception weights file {path} is not a readable \.safetensors file .*truncated or damaged"):
        read_state_dict(path, "Inception")
