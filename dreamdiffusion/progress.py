"""Progress bars for long work outside training (tqdm, as Lightning's own bar).

MOABB download and cache build, the CLIP/VAE embedding caches, the synthetic dataset writers and
``generate`` show a bar on stderr. A bar is drawn only when stderr is a terminal and nobody asked for
quiet, so batch-job logs (stderr redirected to a file) never fill with redraws. Quiet is asked for by

* ``--quiet`` on any plain command (``dreamdiffusion data ...``, ``weights ...``, ``generate``);
* ``with dreamdiffusion.progress.quiet(): ...`` around Python calls;
* a Trainer without its progress bar (``trainer.enable_progress_bar: false``), for the caches a data
  module builds in ``prepare_data`` (:func:`quiet_for`).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from tqdm import tqdm

_QUIET: ContextVar[bool] = ContextVar("dreamdiffusion_quiet", default=False)


@contextmanager
def quiet(on: bool = True) -> Iterator[None]:
    """No bar inside the ``with`` block when ``on`` is true (an enclosing ``quiet()`` stays in force)."""
    token = _QUIET.set(_QUIET.get() or on)
    try:
        yield
    finally:
        _QUIET.reset(token)


def quiet_for(trainer) -> bool:
    """True when ``trainer`` (a Lightning Trainer, or ``None`` outside one) runs without its progress bar."""
    return trainer is not None and trainer.progress_bar_callback is None


def enabled() -> bool:
    """True when a bar would be drawn: nothing asked for quiet and stderr is a terminal."""
    if _QUIET.get():
        return False
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty is not None and isatty())


def bar(iterable: Iterable | None = None, *, total: int | None = None, desc: str, unit: str = "it", quiet: bool = False) -> tqdm:
    """A tqdm bar on stderr counting ``total`` ``unit`` s (``len(iterable)`` by default); inert when ``quiet``
    or not :func:`enabled` (it still iterates, it prints nothing)."""
    disable = quiet or not enabled()
    return tqdm(iterable, total=total, desc=desc, unit=unit, file=sys.stderr, disable=disable, dynamic_ncols=True)
