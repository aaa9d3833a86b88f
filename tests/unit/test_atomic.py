"""Atomic writes: modes that follow the umask, a full disk reported (never a crash), no temporaries left."""

import errno
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from dreamdiffusion import atomic
from dreamdiffusion.atomic import (
    atomic_dir,
    atomic_path,
    host_tag,
    remove_stale_temporaries,
    write_safetensors,
    write_text,
)
from dreamdiffusion.data.cache import ShardCache
from dreamdiffusion.errors import DiskFullError


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield
    os.umask(old)


def litter(folder):
    return sorted(p.name for p in folder.rglob(".*tmp-*")) + sorted(p.name for p in folder.rglob(".*old-*"))


def test_exports_follow_the_umask(tmp_path, umask_027):
    write_text(tmp_path / "a.json", "{}")
    write_safetensors(tmp_path / "w.safetensors", {"x": torch.zeros(3)})
    with atomic_dir(tmp_path / "pipeline") as tmp:
        (tmp / "inner.txt").write_text("x")
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "w.safetensors").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "pipeline").stat().st_mode & 0o777 == 0o750


def test_exports_are_readable_by_others_under_the_usual_umask(tmp_path):
    old = os.umask(0o022)
    try:
        write_safetensors(tmp_path / "w.safetensors", {"x": torch.zeros(3)})
        with atomic_dir(tmp_path / "pipeline"):
            pass
    finally:
        os.umask(old)
    assert (tmp_path / "w.safetensors").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "pipeline").stat().st_mode & 0o777 == 0o755


def enospc_after_some_bytes(real):
    """A writer that puts part of the data on disk, then fails as a full disk does."""

    def write(f, *args, **kwargs):
        f.write(b"\0" * 4096)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    return write


def test_a_full_disk_during_a_shard_build_is_one_clear_error_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(np.lib.format, "write_array", enospc_after_some_bytes(np.lib.format.write_array))
    cache = ShardCache(tmp_path)
    shard = tmp_path / "src" / "sub-1" / "0_0.npy"
    with pytest.raises(DiskFullError, match=r"disk full while writing .*0_0\.npy: .* left, .* needed") as info:
        cache.write_shard(shard, np.ones((4, 2, 8), np.float32))
    assert "more than" not in str(info.value)  # the size of a shard is known up front
    assert not shard.exists() and litter(tmp_path) == []


def test_a_full_disk_during_an_export_is_one_clear_error_and_leaves_nothing(tmp_path, monkeypatch):
    import safetensors.torch

    def save_file(state, path, metadata=None):
        open(path, "wb").write(b"\0" * 1000)
        raise Exception("Error while serializing: IoError(Os { code: 28, kind: StorageFull })")  # what safetensors says

    monkeypatch.setattr(safetensors.torch, "save_file", save_file)
    with pytest.raises(DiskFullError, match=r"disk full while writing .*encoder\.safetensors"):
        write_safetensors(tmp_path / "encoder.safetensors", {"x": torch.zeros(10)})
    with pytest.raises(DiskFullError, match=r"disk full while writing .*pipeline: .* more than"):
        with atomic_dir(tmp_path / "pipeline") as tmp:
            (tmp / "part").write_bytes(b"x" * 10)
            raise OSError(errno.ENOSPC, "No space left on device")
    assert list(tmp_path.iterdir()) == []


def test_too_little_space_is_refused_before_writing(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic, "free_bytes", lambda folder: 10 << 20)
    with pytest.raises(DiskFullError, match=r"10\.0 MiB left, 38\.1 MiB needed"):
        write_safetensors(tmp_path / "big.safetensors", {"x": torch.zeros(10_000_000)})
    assert list(tmp_path.iterdir()) == []


def test_any_exception_removes_the_temporary(tmp_path):
    with pytest.raises(KeyboardInterrupt), atomic_path(tmp_path / "f") as tmp:
        tmp.write_text("half")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_temporaries_of_killed_writers_are_removed_and_live_ones_kept(tmp_path):
    dead = tmp_path / f".encoder.safetensors.tmp-{dead_pid()}-{host_tag()}-abc"
    live = tmp_path / f".encoder.safetensors.tmp-{os.getppid()}-{host_tag()}-def"
    dead.write_bytes(b"half"), live.write_bytes(b"being written")
    write_safetensors(tmp_path / "encoder.safetensors", {"x": torch.zeros(1)})  # the next write of that file
    assert not dead.exists() and live.exists()

    stage = tmp_path / "stage"
    (stage / "pipeline").mkdir(parents=True)
    legacy = stage / ".pipeline.tmp-k2j3h4"  # no owner in the name: judged by age
    legacy.mkdir()
    old_dir = stage / "pipeline" / f".unet.old-{dead_pid()}-{host_tag()}-x"
    old_dir.mkdir()
    os.utime(legacy, (1, 1))
    removed = remove_stale_temporaries(stage, older_than=1000)
    assert sorted(removed) == sorted([legacy, old_dir])
    assert (stage / "pipeline").is_dir()


@pytest.fixture
def tiny_filesystem(tmp_path):
    """A 256 KiB tmpfs (needs root and mount rights; skipped elsewhere), unmounted at the end."""
    folder = tmp_path / "tiny"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


def test_a_real_full_disk_is_an_error_not_a_sigbus(tiny_filesystem, monkeypatch):
    monkeypatch.setattr(atomic, "check_space", lambda path, needed: None)  # reach the disk's own ENOSPC
    cache = ShardCache(tiny_filesystem)
    with pytest.raises(DiskFullError, match=r"disk full while writing .*a\.npy: .* left, 1\.0 MiB needed"):
        cache.write_shard(tiny_filesystem / "src" / "sub-1" / "a.npy", np.ones((64, 128, 64), np.float32))
    with pytest.raises(DiskFullError, match=r"disk full while writing .*encoder\.safetensors"):
        write_safetensors(tiny_filesystem / "encoder.safetensors", {"x": torch.zeros(200_000)})
    assert [p for p in tiny_filesystem.rglob("*") if p.is_file()] == []
