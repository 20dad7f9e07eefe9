"""Score a predictions file against the references of its split (pycocoevalcap, PAPER.md section 5)."""
from __future__ import annotations

from pathlib import Path

from .io import read_json, write_json
from .metrics.caption import CaptionScorer


def evaluate_predictions(predictions: str | Path, references: str | Path, out: str | Path, *,
                         variant: str, seed: int | None, split: str) -> dict:
    preds, refs = read_json(predictions), read_json(references)
    with CaptionScorer() as scorer:
        metrics = scorer.score(preds, refs, pred_name=str(predictions), ref_name=str(references))
    result = {"variant": variant, "seed": seed, "split": split, "n_pairs": len(refs), "metrics": metrics}
    write_json(out, result)
    return result
