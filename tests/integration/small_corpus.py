"""Command-line override that shrinks the demo's stage-1 corpus for tests (the demo's own is 20,450
windows, 2.5 GB): 5 subjects x 44 s, 500 windows (4 x 64 per DDP rank), same generator and MOABB path."""

import json

CORPUS = "dreamdiffusion.data.synthetic_corpus.SyntheticEEGCorpus"
SMALL_CORPUS = [f"--data.init_args.dataset_kwargs={json.dumps({CORPUS: {'subjects': 5, 'seconds': 44}})}"]
