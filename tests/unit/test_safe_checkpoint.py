"""The safe reader of torch.save files: tensors and containers come back, nothing from the file runs."""

import pickle
from collections import OrderedDict

import pytest
import torch

from dreamdiffusion.safe_checkpoint import SkippedObject, read_checkpoint


class OpensAFile:
    """Unpickled for real, it creates a file: its ``__reduce__`` names ``open(path, "w")``."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def test_tensors_and_containers_equal_torch_load(tmp_path):
    base = torch.arange(12.0)
    content = {
        "state": OrderedDict(w=torch.randn(3, 4), view=base[2:10:2], t=base.view(3, 4).t()),
        "param": torch.nn.Parameter(torch.ones(2)),
        "half": torch.randn(5).to(torch.bfloat16),
        "rng": torch.random.get_rng_state(),
        "plain": [1, 2.5, "x", (True, None)],
    }
    torch.save(content, tmp_path / "c.pth")
    expected = torch.load(tmp_path / "c.pth", weights_only=True)
    got = read_checkpoint(tmp_path / "c.pth")
    assert got.skipped == []
    assert isinstance(got.content["state"], OrderedDict)
    for key in ("w", "view", "t"):
        assert torch.equal(got.content["state"][key], expected["state"][key])
    assert got.content["state"]["t"].stride() == expected["state"]["t"].stride()
    assert torch.equal(got.content["param"], expected["param"]) and got.content["half"].dtype == torch.bfloat16
    assert torch.equal(got.content["rng"], content["rng"])
    assert got.content["plain"] == [1, 2.5, "x", (True, None)]


def test_a_pickled_payload_is_never_executed(tmp_path):
    marker = tmp_path / "marker"
    payload = OpensAFile(marker)
    pickle.loads(pickle.dumps(payload)).close()  # the payload works: plain unpickling creates the file
    assert marker.exists()
    marker.unlink()

    torch.save({"weights": {"w": torch.ones(2)}, "config": payload}, tmp_path / "c.pth")
    got = read_checkpoint(tmp_path / "c.pth")
    assert not marker.exists()
    assert isinstance(got.content["config"], SkippedObject)
    assert got.content["config"].args == (str(marker), "w")
    assert got.skipped == [f"{open.__module__}.open"]
    assert torch.equal(got.content["weights"]["w"], torch.ones(2))


def test_not_a_torch_zip_file_is_a_clear_error(tmp_path):
    path = tmp_path / "old.pth"
    path.write_bytes(pickle.dumps({"w": 1}))
    with pytest.raises(ValueError, match="not a zip-format torch.save file"):
        read_checkpoint(path)
    with pytest.raises(FileNotFoundError, match="missing.pth does not exist"):
        read_checkpoint(tmp_path / "missing.pth")


def test_a_storage_missing_from_the_archive_is_named(tmp_path):
    import zipfile

    torch.save({"w": torch.ones(3)}, tmp_path / "c.pth")
    with zipfile.ZipFile(tmp_path / "c.pth") as src, zipfile.ZipFile(tmp_path / "cut.pth", "w") as dst:
        for item in src.infolist():
            if "/data/" not in item.filename:
                dst.writestr(item, src.read(item))
    with pytest.raises(ValueError, match="storage 0 is missing from the archive"):
        read_checkpoint(tmp_path / "cut.pth")


def test_tensors_view_the_file_copy_on_write_and_compressed_archives_read(tmp_path):
    import zipfile

    weights = {"w": torch.randn(4, 5), "b": torch.arange(6, dtype=torch.int64)}
    torch.save(weights, tmp_path / "c.pth")
    before = (tmp_path / "c.pth").read_bytes()
    got = read_checkpoint(tmp_path / "c.pth").content
    got["w"].add_(1.0)  # writable, and the file does not change
    assert (tmp_path / "c.pth").read_bytes() == before
    assert torch.equal(got["w"], weights["w"] + 1.0)

    with zipfile.ZipFile(tmp_path / "c.pth") as src, zipfile.ZipFile(tmp_path / "z.pth", "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            dst.writestr(item.filename, src.read(item))
    again = read_checkpoint(tmp_path / "z.pth").content
    assert all(torch.equal(again[k], weights[k]) for k in weights)
