"""`clip4idc prepare`: read a fetched dataset with its format's reader; write the pair manifests, the
reference captions of every split and the image cache the training stages read (data/prepare.py)."""
from __future__ import annotations

import argparse
from pathlib import Path

from . import add_dataset

HELP = "read a dataset; write manifests, references and an image cache"
PARAMS = ("prepare", "data.{dataset}.format", "data.{dataset}.root", "data.{dataset}.overrides")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_dataset(p)
    p.add_argument("--raw", required=True, help="the fetch stage's output for this dataset")
    p.add_argument("--out", required=True, help="prepared directory to create")


def run(args: argparse.Namespace, params) -> None:
    from ..data.prepare import prepare
    dataset = params.data[args.dataset]
    prepare(Path(args.raw) / dataset.root, args.out, reader=dataset.format, image_size=params.prepare.image_size,
            workers=params.prepare.workers, empty_references=params.prepare.empty_references,
            progress=args.progress)
