"""The shard cache: atomic shards + records, resume, invalidation by effective parameters, corruption."""

import json

import numpy as np
import pytest

from dreamdiffusion.data.cache import CacheError, ShardCache, check_writable, effective_preprocessing, open_shard
from dreamdiffusion.signal import Preprocessing, Windows

SOURCE, KEY = "Toy", {"name": "Toy", "kwargs": {}}


def windows(n: int, n_chans: int = 3, sfreq: float = 250.0, seed: int = 0) -> Windows:
    data = np.random.default_rng(seed).standard_normal((n, n_chans, 512)).astype(np.float32)
    return Windows(data, [f"E{i}" for i in range(n_chans)], sfreq, n_nonfinite=1, n_flat=2)


def build(cache, subject=1, recordings=None, **kwargs):
    recordings = recordings if recordings is not None else [("0", "0", windows(4)), ("0", "1", windows(5, seed=1))]
    reuse, complete = cache.valid_entries(SOURCE, subject, KEY)
    return cache.build_subject(SOURCE, KEY, subject, recordings, reuse=reuse, **kwargs), reuse, complete


def test_shards_load_back_as_read_only_float16_memory_maps(tmp_path):
    cache = ShardCache(tmp_path)
    source = windows(4)
    record, _, _ = build(cache, recordings=[("0", "0", source)])
    entry = record["recordings"][0]
    array = open_shard(tmp_path, entry)
    assert isinstance(array, np.memmap) and array.dtype == np.float16 and not array.flags.writeable
    assert array.shape == (4, 3, 512) == (entry["n_windows"], entry["n_chans"], entry["n_times"])
    np.testing.assert_allclose(array.astype(np.float32), source.data, atol=2e-3)
    # the record holds what the manifest promises
    assert {"dataset", "subject", "session", "run", "sfreq", "ch_names", "n_windows", "sha256", "preprocessing"} <= set(entry)
    assert entry["dropped_nonfinite"] == 1 and entry["dropped_flat"] == 2
    assert not list(tmp_path.rglob(".*tmp-*")), "no temporary file may stay behind"


def test_a_complete_subject_is_reused_without_touching_its_shards(tmp_path):
    cache = ShardCache(tmp_path)
    build(cache)
    shard = next(tmp_path.rglob("*.npy"))
    before = shard.stat().st_mtime_ns
    reuse, complete = cache.valid_entries(SOURCE, 1, KEY)
    assert complete and len(reuse) == 2
    build(cache)
    assert shard.stat().st_mtime_ns == before


def test_a_truncated_shard_is_detected_and_only_it_is_rebuilt(tmp_path):
    cache = ShardCache(tmp_path, verify="size")
    record, _, _ = build(cache)
    bad, good = (tmp_path / e["file"] for e in record["recordings"])
    good_mtime = good.stat().st_mtime_ns
    bad.write_bytes(bad.read_bytes()[:-100])
    reuse, complete = cache.valid_entries(SOURCE, 1, KEY)
    assert not complete and set(reuse) == {("0", "1")}
    assert "truncated" in cache.entry_problem(record["recordings"][0])
    build(cache)
    assert cache.valid_entries(SOURCE, 1, KEY)[1]
    assert good.stat().st_mtime_ns == good_mtime


def test_an_edited_shard_fails_its_checksum(tmp_path):
    cache = ShardCache(tmp_path)
    record, _, _ = build(cache)
    path = tmp_path / record["recordings"][0]["file"]
    content = bytearray(path.read_bytes())
    content[-10] ^= 0xFF  # same size, different data
    path.write_bytes(bytes(content))
    assert "checksum" in cache.entry_problem(record["recordings"][0])
    assert not cache.valid_entries(SOURCE, 1, KEY)[1]


def test_a_changed_parameter_invalidates_only_the_recordings_it_changes(tmp_path):
    low_rate = [("0", "0", windows(3, sfreq=128.0))]  # Nyquist 64 Hz: h_freq is lowered to 57.6 Hz anyway
    high_rate = [("0", "0", windows(3, sfreq=1000.0))]
    cache = ShardCache(tmp_path)
    cache.build_subject(SOURCE, KEY, 1, low_rate)
    cache.build_subject(SOURCE, KEY, 2, high_rate)
    changed = ShardCache(tmp_path, Preprocessing(h_freq=80.0))
    assert changed.valid_entries(SOURCE, 1, KEY)[1], "a 128 Hz recording never used h_freq=95"
    reuse, complete = changed.valid_entries(SOURCE, 2, KEY)
    assert not complete and not reuse
    assert "h_freq" in changed.entry_problem(json.loads(cache.record_path(SOURCE, 2).read_text())["recordings"][0])
    # the storage type is a parameter of every shard
    assert not ShardCache(tmp_path, dtype="float32").valid_entries(SOURCE, 1, KEY)[1]
    assert effective_preprocessing(Preprocessing(), 128.0, "float16")["h_freq"] == pytest.approx(57.6)


def test_an_interrupted_subject_leaves_no_record_and_is_rebuilt(tmp_path):
    cache = ShardCache(tmp_path)

    def crashing():
        yield "0", "0", windows(4)
        raise KeyboardInterrupt  # the job is killed between two recordings

    with pytest.raises(KeyboardInterrupt):
        cache.build_subject(SOURCE, KEY, 1, crashing())
    assert not cache.record_path(SOURCE, 1).exists()
    assert cache.valid_entries(SOURCE, 1, KEY) == ({}, False)
    record, _, _ = build(cache)
    assert len(record["recordings"]) == 2


def test_bad_recordings_are_skipped_with_their_reason_or_raised(tmp_path):
    cache = ShardCache(tmp_path)
    error = ValueError("Toy subject 1 session 0 run 1 is 0.100 s long, shorter than one window of 0.44 s")
    record, _, _ = build(cache, recordings=[("0", "0", windows(2)), ("0", "1", error)])
    assert [e["run"] for e in record["recordings"]] == ["0"]
    assert record["skipped"] == [{"session": "0", "run": "1", "reason": str(error)}]
    with pytest.raises(ValueError, match="shorter than one window"):
        cache.build_subject(SOURCE, KEY, 2, [("0", "1", error)], on_bad_recording="error")


def test_windows_that_overflow_float16_are_dropped_and_counted(tmp_path):
    w = windows(3)
    w.data[1, 0, 0] = 1e6  # beyond float16's 65504
    record = ShardCache(tmp_path).build_subject(SOURCE, KEY, 1, [("0", "0", w)])
    entry = record["recordings"][0]
    assert entry["n_windows"] == 2 and entry["dropped_nonfinite"] == 1 + 1


def test_an_unwritable_folder_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(CacheError, match=r"cache_dir .*file/cache is not writable.*set it elsewhere"):
        check_writable(blocker / "cache", "cache_dir", "set it elsewhere")
