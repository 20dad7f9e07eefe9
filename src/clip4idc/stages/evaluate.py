"""`clip4idc evaluate`: caption metrics of a predictions file against the references of its split
(pycocoevalcap, PAPER.md section 5), for the whole split and for each subset the data has."""
from __future__ import annotations

import argparse
from pathlib import Path

from . import add_dataset

HELP = "caption metrics (pycocoevalcap) of a predictions file"
PARAMS = ("decode.split", "evaluate", "data.{dataset}.overrides")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_dataset(p)
    p.add_argument("--data", required=True, help="prepared directory (its references are used)")
    p.add_argument("--predictions", required=True)
    p.add_argument("--variant", required=True, help="name recorded in the metrics file")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--out", required=True, help="metrics JSON to write")


def run(args: argparse.Namespace, params) -> None:
    from ..data.prepared import Prepared
    split = params.decode.split  # score exactly the split that was decoded
    evaluate_predictions(args.predictions, Path(args.data) / "references" / f"{split}.json", args.out,
                         variant=args.variant, seed=args.seed, split=split,
                         manifest=Prepared(args.data).manifest(split), spice=params.evaluate.spice)


def evaluate_predictions(predictions: str | Path, references: str | Path, out: str | Path, *,
                         variant: str, seed: int | None, split: str, manifest: list[dict] | None = None,
                         spice: bool = False) -> dict:
    """`metrics`: the whole split (CLEVR-Change's Total); with the split's `manifest`, also
    `subsets`: change-only, no-change-only and per change type where the data has them, each
    scored on its own by the same scorer, and `detection`: how often the captions tell change pairs
    from distractors (metrics/subsets.change_detection). `spice`: SPICE too where CoreNLP is installed; where it
    is not, a message says so and `skipped` records why (the file is complete without it)."""
    from ..io import read_json, write_json
    from ..metrics.caption import SPICE, CaptionScorer, spice_unavailable
    from ..metrics.subsets import TOTAL, change_detection, evaluation_subsets
    preds, refs = read_json(predictions), read_json(references)
    subsets = evaluation_subsets(manifest) if manifest is not None else {TOTAL: list(refs)}
    if set(subsets[TOTAL]) != set(refs):
        raise ValueError(f"{references} and the split's manifest list different pairs "
                         f"({len(refs)} against {len(subsets[TOTAL])}): re-run prepare")
    skipped = {}
    if spice and (reason := spice_unavailable()) is not None:
        print(f"evaluate: SPICE skipped: {reason}", flush=True)
        skipped[SPICE], spice = reason, False
    with CaptionScorer(spice=spice) as scorer:
        # The total in the references' order (as a direct pycocoevalcap call), each subset a corpus of its own.
        scores = scorer.score_subsets(preds, refs, subsets | {TOTAL: list(refs)},
                                      pred_name=str(predictions), ref_name=str(references))
    metrics = scores.pop(TOTAL)
    scored = {name: {"n_pairs": len(subsets[name]), "metrics": scores[name]} for name in subsets if name != TOTAL}
    result = {"variant": variant, "seed": seed, "split": split, "n_pairs": len(refs), "metrics": metrics,
              "subsets": scored, "skipped": skipped}
    if (detection := change_detection(preds, subsets)) is not None:
        result["detection"] = detection
    write_json(out, result)
    return result
