"""`clip4idc baseline`: the constant-caption baseline. Every pair of `decode.split` gets the most
frequent training caption: the floor any model must beat."""
from __future__ import annotations

import argparse
from pathlib import Path

from . import add_dataset

HELP = "constant-caption baseline: the most frequent training caption"
PARAMS = ("decode.split", "data.{dataset}.overrides")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_dataset(p)
    p.add_argument("--data", required=True, help="prepared directory")
    p.add_argument("--out", required=True, help="predictions JSON to write")


def run(args: argparse.Namespace, params) -> None:
    constant_baseline(args.data, params.decode.split, args.out)


def constant_baseline(prepared_dir: str | Path, split: str, out: str | Path) -> dict:
    """{pair_id: the most frequent training caption} for every pair of `split`."""
    from ..data.prepared import Prepared
    from ..io import write_json
    from ..metrics.caption import most_frequent_caption
    prepared = Prepared(prepared_dir)
    captions = [c for refs in prepared.references("train").values() for c in refs]
    caption = most_frequent_caption(captions)
    predictions = {pair_id: caption for pair_id in prepared.references(split)}
    write_json(out, predictions)
    return predictions
