"""Score a predictions file against the references of its split (pycocoevalcap, PAPER.md section 5)."""
from __future__ import annotations

from pathlib import Path

from .io import read_json, write_json
from .metrics.caption import score_files


def evaluate_predictions(predictions: str | Path, references: str | Path, out: str | Path, *,
                         variant: str, seed: int | None, split: str) -> dict:
    metrics = score_files(predictions, references)
    result = {"variant": variant, "seed": seed, "split": split, "n_pairs": len(read_json(references)),
              "metrics": metrics}
    write_json(out, result)
    return result
