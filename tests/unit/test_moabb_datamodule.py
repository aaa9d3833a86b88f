"""MOABBDataModule on MOABB's FakeDataset and on recordings built to be bad: cache, split, errors."""

import json

import lightning as L
import mne
import numpy as np
import pytest
import torch

import dreamdiffusion.data.moabb as moabb_module
import dreamdiffusion.data.moabb_sources as moabb_sources
from dreamdiffusion.data.cache import CacheError
from dreamdiffusion.data.moabb import MOABBDataModule
from dreamdiffusion.data.moabb_sources import SubjectLoadError, download
from dreamdiffusion.stages.pretrain import MSMPretrainModule

NAMES = mne.channels.make_standard_montage("standard_1005").ch_names


def fake(n_chans=19, sfreq=250, n_subjects=3, duration=8, **extra) -> dict:
    """FakeDataset arguments: ``n_chans`` EEG channels (plus MOABB's stim channel), one run per subject."""
    return {"FakeDataset": dict(n_subjects=n_subjects, n_sessions=1, n_runs=1, sfreq=sfreq, duration=duration,
                                seed=0, channels=NAMES[:n_chans], **extra)}


def module(tmp_path, dataset_kwargs=None, **kwargs) -> MOABBDataModule:
    return MOABBDataModule(dataset_kwargs=dataset_kwargs or fake(), cache_dir=str(tmp_path / "cache"), batch_size=4, **kwargs)


@pytest.mark.parametrize(("n_chans", "sfreq"), [(19, 128), (32, 250), (64, 512), (128, 1000), (160, 250)])
def test_fake_recordings_become_128_by_512_windows(tmp_path, n_chans, sfreq):
    dm = module(tmp_path, fake(n_chans, sfreq))
    if sfreq / 2 <= 95:
        with pytest.warns(UserWarning, match=r"upper edge 95.0 Hz is not below Nyquist \(64.0 Hz\); using 57.6 Hz"):
            dm.prepare_data()
    else:
        dm.prepare_data()
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch.shape == (4, 128, 512) and batch.dtype == torch.float32
    entry = dm.manifest["recordings"][0]
    assert entry["n_chans"] == n_chans and entry["sfreq"] == sfreq  # on disk: the recording's own channels
    assert "stim" not in entry["ch_names"]
    assert entry["n_windows"] == int(8 // 0.44)
    # standardised per channel per recording
    assert abs(float(batch.mean())) < 0.2 and 0.6 < float(batch.std()) < 1.4


def test_2_hz_is_removed_and_40_hz_kept_all_the_way_through_the_cache(tmp_path, monkeypatch):
    sfreq, seconds = 250.0, 30
    t = np.arange(int(seconds * sfreq)) / sfreq
    data = np.stack([np.sin(2 * np.pi * 2 * t) + np.sin(2 * np.pi * 40 * t)] * 2) * 20e-6
    raw = mne.io.RawArray(data, mne.create_info(["C3", "C4"], sfreq, "eeg"), verbose="error")
    stub = StubDataset({1: raw, 2: raw.copy()})
    monkeypatch.setattr(moabb_module, "make_dataset", lambda name, kwargs=None: stub)
    dm = module(tmp_path, {"Stub": {}}, datasets=["Stub"], dtype="float32")
    dm.prepare_data()
    dm.setup("fit")
    # consecutive windows are contiguous: joined, they are the recording at 512 / 0.44 s = 1163.6 Hz
    signal = torch.cat([dm.train_set[i][0] for i in range(len(dm.train_set))]).numpy()
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(len(signal)))) ** 2
    freqs = np.fft.rfftfreq(len(signal), 0.44 / 512)
    def power(f):
        return spectrum[np.argmin(np.abs(freqs - f))]

    assert power(2) < 1e-3 * power(40)
    assert power(40) > 0.2 * spectrum.sum()  # the 40 Hz line holds the signal


class StubDataset:
    """A MOABB-like dataset whose ``get_data`` returns the given raws (subject -> Raw or exception)."""

    def __init__(self, raws: dict):
        self.raws = raws
        self.subject_list = list(raws)

    def get_data(self, subjects):
        subject = subjects[0]
        if isinstance(self.raws[subject], Exception):
            raise self.raws[subject]
        return {subject: {"0train": {"0": self.raws[subject]}}}


def raw_of(seconds=10.0, sfreq=250.0, types=("eeg", "eeg", "eeg"), seed=0):
    data = np.random.default_rng(seed).standard_normal((len(types), int(seconds * sfreq))) * 20e-6
    return mne.io.RawArray(data, mne.create_info([f"E{i}" for i in range(len(types))], sfreq, list(types)), verbose="error")


def stub_module(tmp_path, monkeypatch, raws, **kwargs):
    stub = StubDataset(raws)
    monkeypatch.setattr(moabb_module, "make_dataset", lambda name, kwargs=None: stub)
    return module(tmp_path, {"Stub": {}}, datasets=["Stub"], **kwargs)


def test_bad_recordings_are_counted_skips_and_the_rest_is_built(tmp_path, monkeypatch):
    nan = raw_of(seed=3)
    nan._data[:, 20:80] = np.nan  # inside the first window (samples 0..109)
    nan._data[:, 1000:2500] = 0.0  # 6 s of silence: its middle windows stay flat after filtering
    mixed = raw_of(seed=4)
    mixed.info["chs"][1]["unit"] = mne.io.constants.FIFF.FIFF_UNIT_T  # tesla: not volts
    raws = {
        1: raw_of(seed=1),
        2: raw_of(seconds=0.2),  # shorter than one window
        3: raw_of(sfreq=8.0),  # too slow for a 5 Hz high-pass
        4: raw_of(types=("stim", "eog", "emg")),  # no EEG channel
        5: mixed,
        6: nan,
    }
    dm = stub_module(tmp_path, monkeypatch, raws)
    dm.prepare_data()
    reasons = {s["subject"]: s["reason"] for s in dm.manifest["skipped"]}
    assert "shorter than one window" in reasons[2]
    assert "too low for a 5.0 Hz high-pass" in reasons[3]
    assert "has no EEG channels" in reasons[4]
    assert "different units" in reasons[5]
    assert "Stub subject 4" in reasons[4], "the reason names the recording"
    counts = dm.manifest["counts"]
    assert counts["skipped_recordings"] == 4 and counts["recordings"] == 2
    assert counts["dropped_nonfinite"] == 1 and counts["dropped_flat"] >= 1
    with pytest.raises(ValueError, match="shorter than one window"):
        stub_module(tmp_path / "strict", monkeypatch, raws, on_bad_recording="error").prepare_data()


def test_a_dataset_without_eeg_is_an_error_naming_it(tmp_path, monkeypatch):
    dm = stub_module(tmp_path, monkeypatch, {1: raw_of(types=("stim", "eog")), 2: raw_of(types=("misc",))})
    with pytest.raises(ValueError, match=r"Stub gave no usable window .*no EEG channels.*exclude it"):
        dm.prepare_data()


def test_a_subject_moabb_cannot_load_names_dataset_subject_and_mne_data_and_the_rest_is_kept(tmp_path, monkeypatch):
    raws = {1: raw_of(seed=1), 2: ConnectionError("no route to host"), 3: raw_of(seed=3)}
    dm = stub_module(tmp_path, monkeypatch, raws)
    with pytest.raises(SubjectLoadError, match=r"Stub subject 2 .*no route to host.*MNE_DATA="):
        dm.prepare_data()
    built = sorted(p.name.split(".")[0] for p in (tmp_path / "cache" / "Stub").glob("sub-*.json"))
    assert built == ["sub-1", "sub-3"]


def test_an_interrupted_build_resumes_where_it_stopped(tmp_path, monkeypatch):
    dm = module(tmp_path, fake(n_subjects=4))
    calls = []
    real = moabb_module.moabb_recordings

    def counting(dataset, name, subject, params):
        calls.append(subject)
        if calls == [1, 2, 3]:
            raise KeyboardInterrupt  # the job is killed while subject 3 loads
        yield from real(dataset, name, subject, params)

    monkeypatch.setattr(moabb_module, "moabb_recordings", counting)
    with pytest.raises(KeyboardInterrupt):
        dm.prepare_data()
    assert calls == [1, 2, 3]
    dm.prepare_data()
    assert calls == [1, 2, 3, 3, 4], "subjects 1 and 2 were not loaded again"
    assert dm.report["subjects_reused"] == 2 and dm.report["subjects_built"] == 2


def test_split_is_by_subject_deterministic_and_recorded(tmp_path):
    dm = module(tmp_path, fake(n_subjects=5), seed=7)
    dm.prepare_data()
    dm.setup("fit")
    split = dm.manifest["split"]
    train, val = {tuple(k) for k in split["train"]}, {tuple(k) for k in split["val"]}
    assert not train & val and len(train | val) == 5 and len(val) == 1 and split["seed"] == 7
    manifest = json.loads(next((tmp_path / "cache").glob("manifest-*.json")).read_text())
    assert manifest["split"] == split
    again = module(tmp_path, fake(n_subjects=5), seed=7)
    again.prepare_data()
    assert again.manifest["split"] == split
    other = module(tmp_path, fake(n_subjects=5), seed=8)
    other.prepare_data()
    assert other.manifest["split"] != split and other.report["subjects_built"] == 0


def test_setup_refuses_a_changed_shard_and_prepare_data_repairs_it(tmp_path):
    dm = module(tmp_path)
    dm.prepare_data()
    shard = tmp_path / "cache" / dm.manifest["recordings"][0]["file"]
    shard.write_bytes(shard.read_bytes()[:-512])
    with pytest.raises(CacheError, match=r"sub-1/.*npy is missing or changed.*run prepare_data"):
        module(tmp_path).setup("fit")
    fresh = module(tmp_path)
    fresh.prepare_data()
    assert fresh.report["subjects_built"] == 1
    fresh.setup("fit")


@pytest.mark.filterwarnings("ignore:.*not below Nyquist")  # 128 Hz on purpose
def test_other_parameters_rebuild_what_they_change_and_keep_the_previous_build(tmp_path):
    first = module(tmp_path, fake(sfreq=128))
    first.prepare_data()
    shards = sorted((tmp_path / "cache").rglob("*.npy"))
    # at 128 Hz the upper edge is lowered to 57.6 Hz for h_freq 95 and 80 alike: nothing to rebuild
    same = module(tmp_path, fake(sfreq=128), h_freq=80.0)
    with pytest.raises(CacheError, match="no manifest"):
        same.setup("fit")  # a manifest from other parameters is never read
    same.prepare_data()
    assert same.report["subjects_built"] == 0 and sorted((tmp_path / "cache").rglob("*.npy")) == shards
    other = module(tmp_path, fake(sfreq=128), l_freq=8.0)
    other.prepare_data()
    assert other.report["subjects_built"] == 3
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 2 * len(shards)
    back = module(tmp_path, fake(sfreq=128))  # the first build is still there
    back.prepare_data()
    assert back.report["subjects_built"] == 0
    back.setup("fit")


def test_a_complete_cache_is_used_from_a_read_only_folder(tmp_path, monkeypatch):
    dm = module(tmp_path)
    dm.prepare_data()

    def refuse(*args, **kwargs):
        raise AssertionError("nothing may be written")

    monkeypatch.setattr("dreamdiffusion.data.cache.write_text", refuse)
    monkeypatch.setattr("dreamdiffusion.data.moabb.check_writable", refuse)
    again = module(tmp_path)
    again.prepare_data()
    again.setup("fit")
    assert len(again.train_set) > 0


def test_setup_without_a_build_says_how_to_build(tmp_path):
    with pytest.raises(CacheError, match="prepare_data"):
        module(tmp_path).setup("fit")


def test_download_into_an_unwritable_mne_data_is_a_clear_error(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("MNE_DATA", str(blocker / "mne"))
    with pytest.raises(CacheError, match=r"MNE_DATA .*file/mne is not writable.*export MNE_DATA="):
        download(["FakeDataset"])


def test_download_failures_name_dataset_subject_and_cache_and_the_rest_goes_on(tmp_path, monkeypatch):
    monkeypatch.setenv("MNE_DATA", str(tmp_path / "mne"))

    class Flaky:
        subject_list = [1, 2, 3]

        def download(self, subject_list, **kwargs):
            if subject_list == [2]:
                raise OSError("HTTP 503")

    monkeypatch.setattr(moabb_sources, "make_dataset", lambda name, kwargs=None: Flaky())
    failures = download(["A", "B"])
    assert [(f["dataset"], f["subject"]) for f in failures] == [("A", 2), ("B", 2)]
    assert failures[0]["cache"] == str(tmp_path / "mne") and "HTTP 503" in failures[0]["error"]


def test_loader_memory_maps_survive_pickling_without_their_data(tmp_path):
    import pickle

    dm = module(tmp_path)
    dm.prepare_data()
    dm.setup("fit")
    first = dm.train_set[0]
    payload = pickle.dumps(dm.train_set)
    assert len(payload) < 20_000, "a spawned worker must get paths, not the windows"
    assert torch.equal(pickle.loads(payload)[0], first)


def test_batched_reads_match_single_reads(tmp_path):
    dm = module(tmp_path, fake(n_chans=32, n_subjects=4))
    dm.prepare_data()
    dm.setup("fit")
    indices = [40, 3, 3, 17, len(dm.train_set) - 1, 0]
    batch = dm.train_set.__getitems__(indices)
    assert batch.shape == (6, 128, 512) and batch.dtype == torch.float32
    assert all(torch.equal(batch[k], dm.train_set[i]) for k, i in enumerate(indices))


def test_stage_1_trains_on_the_module(tmp_path):
    L.seed_everything(0)
    dm = module(tmp_path, fake(n_chans=32, n_subjects=3, duration=10))
    model = MSMPretrainModule(preset="tiny", warmup_epochs=1)
    trainer = L.Trainer(max_epochs=1, limit_train_batches=3, limit_val_batches=1, accelerator="cpu",
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(model, datamodule=dm)
    assert trainer.global_step == 3
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
