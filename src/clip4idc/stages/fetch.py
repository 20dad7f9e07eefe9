"""`clip4idc fetch`: one dataset as its authors distribute it, in `data/raw/<dataset>`.

A dataset comes from one of two sources (params `data.<dataset>.source`):
- `synthesize`: the embedded generator writes it, in CLEVR-Change's on-disk format;
- `download`: its official files (PAPER.md section 7) are downloaded into a downloads folder,
  verified, and unpacked (data/download.py, data/extract.py). Files placed there by hand are used
  as they are.
Either way the result is read once by the dataset's reader before it counts as fetched, so a
download that unpacked to the wrong layout fails here, with the reader's message, not in `prepare`.
The output directory appears whole or not at all.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from . import add_dataset

HELP = "a dataset as distributed: downloaded from its official sources, or written by the embedded generator"
# `download` (retries, timeouts, mirrors' base, unpacking limits) is how files arrive, not what they are:
# not tracked (a limit lets an archive through or refuses it; it never changes what is unpacked).
PARAMS = ("data.{dataset}.source", "data.{dataset}.format", "data.{dataset}.root", "data.{dataset}.files",
          "synthesize")
SOURCES_FILE = "SOURCES.json"  # what was fetched from where, with hashes (download source only)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_dataset(p)
    p.add_argument("--out", required=True, help="folder to create (the dataset's files, as distributed)")
    p.add_argument("--downloads", required=True, help="folder that keeps downloaded files between runs; "
                   "put files fetched by hand here")


def run(args: argparse.Namespace, params) -> None:
    counts = fetch(args.dataset, params, args.out, args.downloads, progress=args.progress)
    print(f"fetch {args.dataset}: pairs per split {counts}", flush=True)


def fetch(name: str, params, out_dir: str | Path, downloads: str | Path, *, progress: bool) -> dict:
    """Fetch dataset `name` into `out_dir`; returns pair counts per split as read by its reader."""
    from ..data.readers import read_dataset
    from ..io import atomic_path
    dataset = params.data[name]
    if dataset.source == "synthesize":
        from ..data.synthetic import synthesize
        s = params.synthesize
        synthesize(out_dir, seed=s.seed, n_train=s.n_train, n_val=s.n_val, n_test=s.n_test, width=s.width,
                   height=s.height, min_objects=s.min_objects, max_objects=s.max_objects,
                   n_change_captions=s.change_captions, n_no_change_captions=s.no_change_captions,
                   workers=s.workers, progress=progress)
        return _counts(read_dataset(dataset.format, Path(out_dir) / dataset.root))

    from ..data.download import fetch_dataset
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        sources = fetch_dataset(name, dataset, Path(downloads), tmp, settings=params.download, progress=progress)
        counts = _counts(read_dataset(dataset.format, tmp / dataset.root))
        (tmp / SOURCES_FILE).write_text(json.dumps({"dataset": name, "files": sources, "pairs": counts},
                                                   indent=2) + "\n", encoding="utf-8")
    return counts


def _counts(records) -> dict[str, int]:
    from ..data.records import SPLITS
    return {split: sum(r.split == split for r in records) for split in SPLITS}
