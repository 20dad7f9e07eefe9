"""`clip4idc fetch`: one dataset as its authors distribute it, in `data/raw/<dataset>`.

A dataset comes from one of two sources (params `data.<dataset>.source`):
- `synthesize`: the embedded generator writes it, in CLEVR-Change's on-disk format;
- `download`: its official files (PAPER.md section 7) are downloaded into a downloads folder,
  verified, and unpacked (download.py, extract.py). Files placed there by hand are used as they are.
Either way the result is read once by the dataset's reader before it counts as fetched, so a
download that unpacked to the wrong layout fails here, with the reader's message, not in `prepare`.
The output directory appears whole or not at all.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..io import atomic_path
from ..params import Params
from .readers import read_dataset
from .records import SPLITS

SOURCES_FILE = "SOURCES.json"  # what was fetched from where, with hashes (download source only)


def dataset_root(raw_dir: str | Path, params: Params, name: str) -> Path:
    """Where the reader finds dataset `name` inside the fetch stage's output."""
    return Path(raw_dir) / params.data[name].root


def fetch(name: str, params: Params, out_dir: str | Path, downloads: str | Path, *, progress: bool) -> dict:
    """Fetch dataset `name` into `out_dir`; returns pair counts per split as read by its reader."""
    dataset = params.data[name]
    if dataset.source == "synthesize":
        from .synthetic import synthesize
        s = params.synthesize
        synthesize(out_dir, seed=s.seed, n_train=s.n_train, n_val=s.n_val, n_test=s.n_test, width=s.width,
                   height=s.height, min_objects=s.min_objects, max_objects=s.max_objects,
                   n_change_captions=s.change_captions, n_no_change_captions=s.no_change_captions,
                   workers=s.workers, progress=progress)
        return _counts(read_dataset(dataset.format, dataset_root(out_dir, params, name)))

    from .download import fetch_dataset
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        sources = fetch_dataset(name, dataset, Path(downloads), tmp, settings=params.download, progress=progress)
        counts = _counts(read_dataset(dataset.format, dataset_root(tmp, params, name)))
        (tmp / SOURCES_FILE).write_text(json.dumps({"dataset": name, "files": sources, "pairs": counts},
                                                   indent=2) + "\n", encoding="utf-8")
    return counts


def _counts(records) -> dict[str, int]:
    return {split: sum(r.split == split for r in records) for split in SPLITS}
