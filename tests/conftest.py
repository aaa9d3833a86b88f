"""Test set-up: no network, no writes outside a temporary folder.

The environment is fixed here, before any test module imports MNE, MOABB, diffusers or
transformers (``HF_HUB_OFFLINE`` is read at import time; MOABB writes ``~/.mne`` without ``MNE_DATA``).
"""

import os
import sys
import tempfile
from pathlib import Path

_SANDBOX = Path(tempfile.mkdtemp(prefix="dreamdiffusion-tests-"))
for _key, _sub in (("MNE_DATA", "mne_data"), ("TORCH_HOME", "torch_home"), ("HF_HOME", "hf_home"), ("MPLCONFIGDIR", "mpl")):
    os.environ[_key] = str(_SANDBOX / _sub)
    (_SANDBOX / _sub).mkdir()
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ["MNE_LOGGING_LEVEL"] = "ERROR"

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def repo() -> Path:
    """The repository root (configs live under it)."""
    return REPO


@pytest.fixture
def script(repo):
    """Import ``scripts/<name>.py`` (the scripts are not a package) and return the module."""
    import importlib.util

    def load(name: str):
        spec = importlib.util.spec_from_file_location(name, repo / "scripts" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture
def cli(monkeypatch):
    """Run ``dreamdiffusion ARGS`` in-process, as a user would on the command line."""
    from dreamdiffusion.cli import main

    def run(*args: str) -> int:
        monkeypatch.setattr(sys, "argv", ["dreamdiffusion"])
        return main(list(args))

    return run


@pytest.fixture(scope="session")
def _synthetic_demo_data(tmp_path_factory):
    from dreamdiffusion.data.synthetic import write_synthetic_imagenet_eeg

    return write_synthetic_imagenet_eeg(tmp_path_factory.mktemp("synthetic") / "data")


@pytest.fixture
def demo_run_dir(_synthetic_demo_data, tmp_path_factory):
    """A fresh run_dir holding the demo's synthetic paired data in ``data/`` (what ``make demo`` writes first)."""
    import shutil

    run_dir = tmp_path_factory.mktemp("run")
    shutil.copytree(_synthetic_demo_data, run_dir / "data")
    return run_dir


@pytest.fixture
def hold_lock():
    """``hold_lock(folder)``: another process that takes the run lock of ``folder`` and keeps it (killed at the end)."""
    import subprocess

    held = []

    def start(folder: Path) -> subprocess.Popen:
        code = f"from dreamdiffusion import run_lock; run_lock.acquire({str(folder)!r}); print('held', flush=True); input()"
        process = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        held.append(process)
        assert process.stdout.readline().strip() == "held"
        return process

    yield start
    for process in held:
        process.kill()
        process.wait()
