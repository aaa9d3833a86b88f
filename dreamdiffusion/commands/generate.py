"""``dreamdiffusion generate``: EEG files in, pictures out.

::

    dreamdiffusion generate --pipeline runs/demo/finetune/pipeline --eeg rec.edf --out pics --onset 12.34 20.0
    dreamdiffusion generate --pipeline DIR --eeg rec.fif --out pics --events          # a window per event
    dreamdiffusion generate --pipeline DIR --eeg eeg_5_95_std.pth --out pics --index 0 17

* Any recording MNE reads (``mne.io.read_raw``: .fif, .edf, .bdf, .set, .vhdr, ...): EEG channels in µV,
  band-pass 5–95 Hz and per-channel standardisation over the recording (:mod:`dreamdiffusion.signal`, as in
  stage 1), a 0.44 s window at each onset resampled to 512 samples, channels harmonised to 128 (fewer are
  replicated, with a warning). Onsets come from ``--onset`` (seconds from the start of the recording) or
  ``--events`` (the file's annotations, else its stimulus channel).
* An ImageNet-EEG ``.pth`` (``eeg_5_95_std.pth``, already filtered and standardised): trials by position
  ``--index`` in its ``dataset`` list, samples 20..460 resampled to 512, as the paired data module does.

One PNG per window and sample: ``<stem>_onset<seconds>s_sample<k>.png`` or ``<stem>_index<i>_sample<k>.png``.
Sample ``k`` of window ``j`` is seeded with ``derive_seed(seed, j, k)``. The sampler is the pipeline's scheduler
(stage 2 writes DPM-Solver++; ``--steps`` defaults to its 20) unless ``--scheduler NAME`` names another diffusers
scheduler (built on the same noise schedule).
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
import torch

from dreamdiffusion import progress
from dreamdiffusion.signal import N_CHANS, N_TIMES, Preprocessing, cut_windows, eeg_data, filter_and_standardise, replication_index

MNE_FORMATS = (".fif", ".fif.gz", ".edf", ".bdf", ".gdf", ".set", ".vhdr", ".cnt", ".mff", ".nxe", ".snirf")
IMAGENET_EEG_WINDOW = (20, 460)
# dreamdiffusion.generation.DEFAULT_STEPS (a test keeps them equal), not imported: the CLI starts without diffusers.
DEFAULT_STEPS = 20


def read_recording(path: Path):
    """``mne.io.Raw`` (preloaded) of ``path``, or an error naming the format and the supported ones."""
    import mne

    suffix = "".join(path.suffixes[-2:]) if path.name.endswith(".fif.gz") else path.suffix.lower()
    if not path.is_file():
        raise FileNotFoundError(f"EEG file {path} does not exist")
    try:
        return mne.io.read_raw(path, preload=True, verbose="error")
    except Exception as e:  # noqa: BLE001 - MNE raises many types; the user needs the file, format and choices
        raise ValueError(
            f"could not read {path} as a {suffix or 'suffix-less'} recording ({type(e).__name__}: {e}). "
            f"Supported: recordings MNE reads ({', '.join(MNE_FORMATS)}, ...) or an ImageNet-EEG .pth with --index"
        ) from None


def event_onsets(raw, source: str) -> np.ndarray:
    """Event onsets in samples from the start of the data: annotations, else the stimulus channel."""
    import mne

    if len(raw.annotations):
        events, _ = mne.events_from_annotations(raw, verbose="error")
    else:
        stim = mne.pick_types(raw.info, stim=True, eeg=False)
        if len(stim) == 0:
            raise ValueError(f"{source} has no annotations and no stimulus channel: give window onsets with --onset")
        events = mne.find_events(raw, verbose="error")
    if len(events) == 0:
        raise ValueError(f"{source} has no events: give window onsets with --onset")
    return events[:, 0] - raw.first_samp


def recording_windows(
    path: Path, onsets_s: list[float] | None, events: bool, params: Preprocessing = Preprocessing()
) -> tuple[torch.Tensor, list[str]]:
    """EEG windows ``[N, 128, 512]`` of a recording and their names (``onset<seconds>s``)."""
    source = str(path)
    raw = read_recording(path)
    data, ch_names, sfreq = eeg_data(raw, source)
    if sfreq <= 2 * params.h_freq:
        raise ValueError(
            f"{source}: sampling rate {sfreq:g} Hz is too low for the {params.l_freq:g}-{params.h_freq:g} Hz band the "
            f"model was trained on (needs more than {2 * params.h_freq:g} Hz); record or export at a higher rate"
        )
    if events:
        onsets = event_onsets(raw, source)
    elif onsets_s:
        onsets = np.round(np.asarray(onsets_s, dtype=float) * sfreq).astype(int)
    else:
        raise ValueError("give window onsets with --onset SECONDS ... or use the file's events with --events")
    length = int(round(params.window_seconds * sfreq))
    last = (data.shape[-1] - length) / sfreq
    for onset in onsets:
        if onset < 0 or onset + length > data.shape[-1]:
            raise ValueError(
                f"{source}: onset {onset / sfreq:.3f} s is beyond the recording: a {params.window_seconds} s window "
                f"must start between 0 and {last:.3f} s (the recording is {data.shape[-1] / sfreq:.3f} s long)"
            )
    filtered = filter_and_standardise(data, sfreq, params, source)
    windows = []
    for onset in onsets:
        window, n_nonfinite, n_flat = cut_windows(
            filtered, sfreq, params.window_seconds, params.n_times, onsets=np.array([onset]),
            flat_threshold=params.flat_threshold, source=source,
        )
        if n_nonfinite or n_flat:
            what = ("holds NaN or Inf samples (data missing from the recording there)" if n_nonfinite
                    else "is flat on every channel (a disconnected or zeroed stretch)")
            raise ValueError(f"{source}: the {params.window_seconds} s window at {onset / sfreq:.3f} s {what}; choose another --onset")
        windows.append(window[0])
    n_chans = len(ch_names)
    if n_chans != N_CHANS:
        how = "replicated" if n_chans < N_CHANS else "thinned to evenly spaced channels"
        warnings.warn(
            f"{source} has {n_chans} EEG channels, the model takes {N_CHANS}: {how} (the paper's harmonisation)",
            stacklevel=2,
        )
    x = torch.as_tensor(np.stack(windows))[:, torch.as_tensor(replication_index(n_chans, N_CHANS))]
    return x.float(), [f"onset{o / sfreq:.3f}s" for o in onsets]


def imagenet_eeg_windows(path: Path, indices: list[int]) -> tuple[torch.Tensor, list[str]]:
    """Trials ``indices`` of an ImageNet-EEG ``.pth`` as ``[N, 128, 512]`` windows (samples 20..460 resampled)."""
    from dreamdiffusion.data.plain_load import load_plain
    from dreamdiffusion.signal import resample_window

    if not indices:
        raise ValueError(f"{path} is an ImageNet-EEG file: choose trials with --index I ...")
    content = load_plain(path, "ImageNet-EEG file")
    if not isinstance(content, dict) or not isinstance(content.get("dataset"), list):
        raise ValueError(f"{path} is not an ImageNet-EEG file: expected a dict with a 'dataset' list of trials")
    trials = content["dataset"]
    start, stop = IMAGENET_EEG_WINDOW
    windows = []
    for i in indices:
        if not 0 <= i < len(trials):
            raise ValueError(f"{path}: --index {i} is out of range (the file holds {len(trials)} trials, 0..{len(trials) - 1})")
        eeg = torch.as_tensor(trials[i]["eeg"]).float()
        if eeg.shape[0] != N_CHANS or eeg.shape[1] < stop:
            raise ValueError(f"{path}: trial {i} has shape {tuple(eeg.shape)}, expected [{N_CHANS}, >= {stop}]")
        if not torch.isfinite(eeg[:, start:stop]).all():
            raise ValueError(
                f"{path}: trial {i} (subject {trials[i].get('subject', '?')}) holds NaN or Inf in samples {start}..{stop}; "
                "choose another --index (`dreamdiffusion data check-imagenet-eeg` lists such trials)"
            )
        windows.append(resample_window(eeg[:, start:stop], N_TIMES))
    return torch.stack(windows), [f"index{i}" for i in indices]


def check_options(args: argparse.Namespace) -> None:
    """Refuse values that would fail later with a library's message (or after minutes of loading)."""
    for option, value in (("--batch-size", args.batch_size), ("--num-samples", args.num_samples), ("--steps", args.steps)):
        if value < 1:
            raise ValueError(f"{option} must be >= 1, got {value}")
    try:
        device = torch.device(args.device)
    except RuntimeError as e:
        raise ValueError(f"--device {args.device!r} is not a device PyTorch knows ({e}); use cpu or cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {args.device}: PyTorch sees no CUDA GPU on this machine; use --device cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"--device {args.device}: this machine has {torch.cuda.device_count()} GPU(s) (cuda:0..)")


def generate(args: argparse.Namespace) -> int:
    from dreamdiffusion.pipeline import DreamDiffusionPipeline

    check_options(args)
    eeg_path, out = Path(args.eeg), Path(args.out)
    if eeg_path.suffix.lower() == ".pth":
        if args.onset or args.events:
            raise ValueError("--onset/--events apply to recordings; an ImageNet-EEG .pth takes --index")
        windows, names = imagenet_eeg_windows(eeg_path, args.index or [])
    else:
        if args.index:
            raise ValueError("--index applies to an ImageNet-EEG .pth; a recording takes --onset or --events")
        windows, names = recording_windows(eeg_path, args.onset, args.events)
    from dreamdiffusion.atomic import atomic_path
    from dreamdiffusion.generation import build_sampler, derive_seed

    pipe = DreamDiffusionPipeline.from_pretrained(args.pipeline).to(args.device)
    pipe.set_progress_bar_config(disable=not progress.enabled(), leave=False)  # the steps of one batch, under the images bar
    if args.scheduler is not None:
        pipe.scheduler = build_sampler(pipe.scheduler.config, args.scheduler)
    out.mkdir(parents=True, exist_ok=True)

    written = 0
    with progress.bar(total=len(windows) * args.num_samples, desc="generate", unit="image") as bar:
        for start in range(0, len(windows), args.batch_size):
            chunk = windows[start : start + args.batch_size]
            # One generator per image, seeded by the window's position in the whole list (not in the chunk).
            generators = [
                torch.Generator("cpu").manual_seed(derive_seed(args.seed, start + j, k))
                for j in range(len(chunk)) for k in range(args.num_samples)
            ]
            images = pipe(
                chunk, num_images_per_eeg=args.num_samples, num_inference_steps=args.steps,
                guidance_scale=args.guidance_scale, generator=generators,
            ).images
            for i, image in enumerate(images):
                j, k = divmod(i, args.num_samples)
                path = out / f"{eeg_path.stem}_{names[start + j]}_sample{k}.png"
                with atomic_path(path) as tmp:
                    image.save(tmp, format="PNG")
                written += 1
                bar.update()
    print(f"{written} images from {len(windows)} EEG windows of {eeg_path} written to {out}")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("generate", help="EEG file in, images out (a stage-2 pipeline folder)")
    p.add_argument("--pipeline", required=True, help="pipeline folder written by stage 2 (<run_dir>/finetune/pipeline)")
    p.add_argument("--eeg", required=True, help="recording MNE reads (.fif .edf .bdf .set .vhdr ...) or ImageNet-EEG .pth")
    p.add_argument("--out", required=True, help="folder for the PNGs")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--onset", type=float, nargs="+", metavar="S", help="window starts in seconds (0.44 s windows)")
    where.add_argument("--events", action="store_true", help="a window at each event (annotations or stim channel)")
    p.add_argument("--index", type=int, nargs="+", metavar="I", help="trial positions in an ImageNet-EEG .pth")
    p.add_argument("--num-samples", type=int, default=1, help="images per window")
    p.add_argument(
        "--scheduler", "--sampler", dest="scheduler", metavar="NAME",
        help="sampler: a diffusers scheduler class (DDIMScheduler, DPMSolverMultistepScheduler, "
        "EulerDiscreteScheduler, UniPCMultistepScheduler, ...) or ddim / plms; default: the pipeline's own",
    )
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS,
                   help=f"sampling steps (default {DEFAULT_STEPS}: DPM-Solver++, the sampler stage 2 writes; DDIM: 50; authors: PLMS 250)")
    p.add_argument("--guidance-scale", type=float, default=1.0, help="classifier-free guidance (1: none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=8, help="windows per sampling batch (results do not depend on it)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.set_defaults(func=generate)  # errors: one line from dreamdiffusion.cli.main
