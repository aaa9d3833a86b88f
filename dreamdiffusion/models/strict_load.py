"""Strict state-dict loading whose error names the file and says what to check.

Every weights file this project reads goes through :func:`load_strict`: a checkpoint that does not fit
its module exactly (missing, unexpected or differently shaped tensors) is an error, never a partial load.
"""

from __future__ import annotations

from torch import Tensor, nn


def load_strict(module: nn.Module, state: dict[str, Tensor], source: str, fix: str = "", assign: bool = False) -> nn.Module:
    """``module.load_state_dict(state, strict=True)``, refusing a mismatch with the first offending keys.

    ``source`` names where ``state`` came from (a file); ``fix`` is appended to the message. ``assign``: the
    module takes ``state``'s tensors instead of copying them (for a module built on the meta device).
    """
    expected = module.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    if missing or unexpected or wrong:
        raise ValueError(
            f"{source} does not fit {type(module).__name__}: missing {missing[:5]}, unexpected {unexpected[:5]}, "
            f"wrong shape {wrong[:5]}" + (f"; {fix}" if fix else "")
        )
    module.load_state_dict(state, strict=True, assign=assign)
    return module
