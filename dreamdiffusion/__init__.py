"""dreamdiffusion: images from EEG the way DreamDiffusion (Bai et al., 2023) makes them."""

__version__ = "0.1.0"  # the one place the version is written (pyproject.toml reads it)
