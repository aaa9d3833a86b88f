"""THINGS-EEG2 at full size: peak memory of ``ThingsEEG2DataModule.setup`` and EEG items per second of its loader.

Writes one subject's training file of the 63-channel 250 Hz variant at the release's size (16540 pictures ×
4 repetitions × 63 channels × 250 samples, float64: 8.3 GB) plus a metadata file, in the release's format (an
``.npy`` holding a pickled dict). The writer streams: the EEG goes to a raw memory-mapped file chunk by chunk and is
pickled from there (protocol 5, the array's buffer written as it is, never copied into memory), so neither writing
nor reading holds 8 GB in RAM. Needs ~17 GB of free disk during the write (the raw file is deleted after).

Then, in a fresh process (so the writer's memory does not count): ``setup("fit")`` with ``eeg_only`` (the EEG is
memory-mapped by :func:`dreamdiffusion.data.npy_dict.load_npy_dict`), its wall time and resident memory;
then items per second of the train loader (batch 25) for single trials and for averaged repetitions, with 0 and
2 workers. Memory is read from ``/proc/self/status`` (anonymous vs. mapped-file pages; a peak-RSS figure would
count the memory-mapped pages read, which are page cache). Pictures are not read (their cost is that of any image
loader; see ``paired_loader.py``).

    OMP_NUM_THREADS=1 python benchmarks/things_loader.py --out /tmp/things-full [--batches 200] [--keep]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import pickle
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # measure this checkout's code, not an installed copy

PER_CONCEPT = 10  # the release: 1654 training concepts x 10 pictures


def write_full_size(out: Path, conditions: int = 16540, seed: int = 0) -> Path:
    """``out/preprocessed_data/sub-08/preprocessed_eeg_training.npy`` (8.3 GB) and ``out/image_metadata.npy``."""
    from dreamdiffusion.data.things_eeg2_synthetic import CHANNELS_63, epoch_times

    target = out / "preprocessed_data" / "sub-08" / "preprocessed_eeg_training.npy"
    target.parent.mkdir(parents=True, exist_ok=True)
    FULL = (conditions, 4, 63, 250)
    CONCEPTS = conditions // PER_CONCEPT
    raw_path = out / "eeg.raw"
    raw = np.memmap(raw_path, dtype=np.float64, mode="w+", shape=FULL)
    rng = np.random.default_rng(seed)
    for first in range(0, FULL[0], 500):
        raw[first : first + 500] = rng.standard_normal((min(500, FULL[0] - first), *FULL[1:]))
    raw.flush()
    # an exact ndarray over the mapped buffer: pickle protocol 5 writes its buffer without copying it
    data = np.ndarray(FULL, dtype=np.float64, buffer=raw)
    content = {"preprocessed_eeg_data": data, "ch_names": list(CHANNELS_63), "times": epoch_times(250.0)}
    with open(target, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "|O", "fortran_order": False, "shape": ()})
        pickle.dump(np.array(content, dtype=object), f, protocol=5)
    del data, raw
    raw_path.unlink()
    concepts = [f"{k + 1:05d}_concept{k + 1}" for k in range(CONCEPTS) for _ in range(PER_CONCEPT)]
    files = [f"concept{k + 1}_{j + 1:02d}b.jpg" for k in range(CONCEPTS) for j in range(PER_CONCEPT)]
    np.save(out / "image_metadata.npy", {
        "train_img_concepts": np.array(concepts), "train_img_files": np.array(files),
        "test_img_concepts": np.array([f"{k + 1:05d}_novel{k + 1}" for k in range(200)]),
        "test_img_files": np.array([f"novel{k + 1}_01s.jpg" for k in range(200)]),
    }, allow_pickle=True)
    return target


def resident_mb() -> dict[str, float]:
    """This process's resident memory now, in MB: ``anon`` (heap: what a loader really holds) and ``file``
    (mapped file pages: the memory-mapped EEG read so far, page cache the kernel reclaims under pressure)."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return {"anon": int(fields["RssAnon"].split()[0]) / 1024, "file": int(fields["RssFile"].split()[0]) / 1024}


def measure(root: str, batches: int) -> dict:
    """Run in a fresh process: setup time and resident memory, then loader throughput."""
    import torch

    from dreamdiffusion.data.things_eeg2 import ThingsEEG2DataModule

    torch.set_num_threads(1)
    rss_before = resident_mb()
    start = time.perf_counter()
    dm = ThingsEEG2DataModule(root, eeg_dir="preprocessed_data", subjects=[8], val_concepts=10, eeg_only=True, batch_size=25)
    dm.setup("fit")
    setup_s = time.perf_counter() - start
    rss_setup = resident_mb()
    result = {"setup_s": setup_s, "rss_mb_before_setup": rss_before, "rss_mb_after_setup": rss_setup,
              "train_items": len(dm.datasets["train"]), "file_gb": os.path.getsize(
                  Path(root) / "preprocessed_data/sub-08/preprocessed_eeg_training.npy") / 1e9, "rows": []}
    for mode in ("single", "average"):
        for workers in (0, 2):
            dm = ThingsEEG2DataModule(root, subjects=[8], val_concepts=10, eeg_only=True, batch_size=25,
                                      num_workers=workers, train_repetitions=mode)
            dm.setup("fit")
            loader = dm.train_dataloader()
            iterator = iter(loader)
            next(iterator)  # workers started
            start = time.perf_counter()
            n = 0
            for batch in itertools.islice(iterator, batches):
                n += batch.shape[0]
            elapsed = time.perf_counter() - start
            result["rows"].append({"repetitions": mode, "workers": workers, "items_per_s": n / elapsed, "items": n})
    result["rss_mb_end"] = resident_mb()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="/tmp/things-full")
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--conditions", type=int, default=16540, help="training pictures (16540: the release)")
    parser.add_argument("--keep", action="store_true", help="keep the 8.3 GB file for another run")
    parser.add_argument("--measure-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    out = Path(args.out)
    if args.measure_only:
        print(json.dumps(measure(str(out), args.batches)))
        return
    target = out / "preprocessed_data" / "sub-08" / "preprocessed_eeg_training.npy"
    if not target.is_file():
        start = time.perf_counter()
        write_full_size(out, args.conditions)
        print(f"wrote {target} ({target.stat().st_size / 1e9:.2f} GB) in {time.perf_counter() - start:.0f} s")
    done = subprocess.run([sys.executable, __file__, "--out", str(out), "--batches", str(args.batches), "--measure-only"],
                          capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    before, after, end = result["rss_mb_before_setup"], result["rss_mb_after_setup"], result["rss_mb_end"]
    print(f"file {result['file_gb']:.2f} GB; setup('fit') {result['setup_s']:.2f} s; {result['train_items']} train items")
    print(f"resident MB (anonymous / mapped file): before setup (imports) {before['anon']:.0f} / {before['file']:.0f}; "
          f"after setup {after['anon']:.0f} / {after['file']:.0f}; after the loaders {end['anon']:.0f} / {end['file']:.0f}")
    print("| repetitions | workers | EEG items/s | batches of 25/s |\n|---|---|---|---|")
    for row in result["rows"]:
        print(f"| {row['repetitions']} | {row['workers']} | {row['items_per_s']:.0f} | {row['items_per_s'] / 25:.1f} |")
    if not args.keep:
        shutil.rmtree(out)


if __name__ == "__main__":
    main()
