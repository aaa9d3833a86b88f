"""Which MOABB datasets make the pre-training corpus: the rule, evaluated offline.

The paper pre-trains on "every MOABB EEG dataset with more than 30 channels" and never published the
list. Here the rule is evaluated on MOABB's own dataset classes and their ``METADATA``
(:class:`moabb.datasets.metadata.schema.DatasetMetadata`: EEG channel count from
``acquisition.channel_types["eeg"]``, ``acquisition.sampling_rate``), without downloading anything.
Datasets whose class carries no metadata (their channel count is only known after a download) are
reported as *undetermined*, never guessed. ``configs/data/moabb_paper.yaml`` pins the result so that
a run stays reproducible when MOABB adds datasets.
"""

from __future__ import annotations

import functools
import inspect
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

# MOABB's simulated datasets are not EEG corpora.
SIMULATED = ("FakeDataset", "FakeVirtualRealityDataset")


@dataclass(frozen=True)
class DatasetInfo:
    """What MOABB's metadata says about one dataset.

    ``eeg_channels``: EEG channels (no EOG/EMG/misc); ``sfreq``: sampling rate in Hz; ``subjects``:
    number of subjects; ``sessions``/``runs``: per subject/session as MOABB states them (``None`` when
    unknown); ``trial_seconds``/``trials_per_subject``: trial length and count from the metadata when
    they are plain numbers (used only for the "on paper" size estimate).
    """

    name: str
    paradigm: str
    eeg_channels: int
    sfreq: float
    subjects: int
    sessions: int | None = None
    runs: int | None = None
    trial_seconds: float | None = None
    trials_per_subject: int | None = None

    def to_json(self) -> dict:
        """The ``moabb-list --json`` record: name, paradigm, eeg_channels, sfreq, subjects."""
        return {k: v for k, v in asdict(self).items() if k in ("name", "paradigm", "eeg_channels", "sfreq", "subjects")}


@functools.cache
def dataset_classes() -> dict[str, type]:
    """Current (non-deprecated, non-simulated) MOABB dataset classes by name."""
    import moabb.datasets as db
    from moabb.datasets.base import BaseDataset
    from moabb.utils import aliases_list

    deprecated = {old for old, *_ in aliases_list}
    return {  # a fresh dict per call would re-scan; callers must not mutate it
        name: cls
        for name, cls in inspect.getmembers(db, inspect.isclass)
        if issubclass(cls, BaseDataset) and not inspect.isabstract(cls)
        and name not in deprecated and name not in SIMULATED
    }


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


@functools.cache
def dataset_info(name: str, cls: type | None = None) -> DatasetInfo | None:
    """Metadata of one MOABB dataset class, or ``None`` when MOABB carries none for it.

    The class is instantiated (no download: MOABB constructors only set attributes) because some
    datasets set ``METADATA`` per instance.
    """
    if cls is None:
        cls = dataset_classes().get(name)
        if cls is None:
            raise ValueError(f"{name!r} is not a current MOABB dataset class (moabb.datasets)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset = cls()
    meta = getattr(dataset, "METADATA", None)
    if meta is None or getattr(meta, "acquisition", None) is None:
        return None
    acquisition = meta.acquisition
    eeg = int((acquisition.channel_types or {}).get("eeg", 0))
    data_structure = getattr(meta, "data_structure", None)
    trials = _number(getattr(data_structure, "n_trials", None)) if data_structure else None
    return DatasetInfo(
        name=name,
        paradigm=str(dataset.paradigm),
        eeg_channels=eeg,
        sfreq=float(acquisition.sampling_rate),
        subjects=len(dataset.subject_list),
        sessions=getattr(meta, "sessions_per_subject", None),
        runs=getattr(meta, "runs_per_session", None),
        trial_seconds=_number(getattr(meta.experiment, "trial_duration", None)),
        trials_per_subject=int(trials) if trials is not None else None,
    )


def select_datasets(
    min_channels: int = 30,
    include: list[str] | tuple[str, ...] = (),
    exclude: list[str] | tuple[str, ...] = (),
) -> tuple[list[DatasetInfo], list[str]]:
    """Apply the rule "more than ``min_channels`` EEG channels" to MOABB's catalogue.

    Returns ``(selected, undetermined)``: the selected datasets sorted by name, and the names of
    datasets whose channel count MOABB's metadata does not give (decide on them with ``include``).
    ``include`` adds datasets whatever their channel count; ``exclude`` removes them.
    """
    classes = dataset_classes()
    unknown = sorted((set(include) | set(exclude)) - set(classes))
    if unknown:
        raise ValueError(f"include/exclude name datasets MOABB does not have: {unknown}")
    selected, undetermined = [], []
    for name, cls in sorted(classes.items()):
        if name in exclude:
            continue
        info = dataset_info(name, cls)
        if info is None:
            if name in include:
                raise ValueError(f"{name} is in include but MOABB has no metadata for it; it cannot be listed offline")
            undetermined.append(name)
        elif info.eeg_channels > min_channels or name in include:
            selected.append(info)
    return selected, undetermined


def load_pinned(path: str | Path) -> list[str]:
    """Dataset names of a pinned list (``configs/data/moabb_paper.yaml``: ``datasets: [...]``)."""
    import yaml

    config = yaml.safe_load(Path(path).read_text())
    names = config.get("datasets") if isinstance(config, dict) else None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"{path}: expected a mapping with a `datasets:` list of MOABB class names")
    return names
