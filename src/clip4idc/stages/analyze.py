"""`clip4idc analyze`: the error analysis of one dataset's captions: per pair, each variant and seed's (and the
constant baseline's, and where `released` lists the dataset the authors' released captioner's) sentence-level
scores and outcome (missed change, hallucinated change, and on CLEVR-style data wrong change type, wrong object,
unparsed), with the counts and confusion matrices the report prints (clip4idc/analysis/pairs.py). Reads only the
prediction files, the split's references and its manifest.

Writes a folder: `<variant>/seed<seed>.json` for every variant and seed, `constant.json`, `released.json` (a
dataset of `released`), and `references.json` (how the grammar and the no-change detector read the split's own
references).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ..params import captioner_files
from . import add_dataset

HELP = "error analysis of a dataset's captions: per-pair scores, missed / hallucinated changes, change-type confusion"
# `format`: whether captions are parsed with the CLEVR grammar.
PARAMS = ("seeds", "released", "decode.split", "data.{dataset}.format", "data.{dataset}.overrides")
# The on-disk formats whose captions follow CLEVR-Change's grammar.
GRAMMAR_FORMATS = ("clevr_change",)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_dataset(p)
    p.add_argument("--data", required=True, help="prepared directory (its references and manifest are used)")
    p.add_argument("--predictions-dir", required=True, help="the dataset's folder of decoded captions: "
                   "<variant>/seed<seed>.json for every variant and seed (`seeds`), constant.json and, for a "
                   "dataset of `released`, released.json")
    p.add_argument("--out", required=True, help="folder to write (replaced whole)")


def run(args: argparse.Namespace, params) -> None:
    from ..data.prepared import Prepared
    split = params.decode.split  # analyse exactly the split that was decoded
    prepared = Prepared(args.data)
    runs = captioner_files(args.predictions_dir, params.seeds, released=args.dataset in params.released)
    analyze_predictions(runs, prepared.references(split), prepared.manifest(split), args.out, split=split,
                        dataset=args.dataset, grammar=params.data[args.dataset].format in GRAMMAR_FORMATS,
                        progress=args.progress)


def analyze_predictions(runs: dict[str, str | Path], references: dict[str, list[str]], manifest: list[dict],
                        out: str | Path, *, split: str, dataset: str, grammar: bool, progress: bool = True) -> None:
    """`runs`: {"<variant>/seed<seed>", "constant" or "released": predictions file} (`params.captioner_files`).
    Every file is read and checked before anything is written; the folder `out` appears whole or not at all."""
    from tqdm import tqdm

    from ..analysis.pairs import analyze_run, detector_coverage, reference_truths
    from ..io import atomic_path, json_text, read_json
    from ..metrics.caption import CaptionScorer
    missing = [str(p) for p in runs.values() if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(f"analyze: {len(missing)} prediction file(s) missing: {missing}")
    ids = [m["pair_id"] for m in manifest]
    if set(ids) != set(references):
        raise ValueError(f"the {split} references and manifest list different pairs ({len(references)} against "
                         f"{len(ids)}): re-run prepare")
    predictions = {name: read_json(path) for name, path in runs.items()}
    truths, coverage = reference_truths(manifest) if grammar else ({}, {})
    results = {}
    with CaptionScorer() as scorer:
        for name, preds in tqdm(predictions.items(), desc=f"analyze {dataset}", unit="run", disable=not progress):
            scores = scorer.per_pair(preds, references, pred_name=str(runs[name]), ref_name=f"{split} references")
            variant, _, seed = name.partition("/seed")
            results[name] = {"dataset": dataset, "split": split, "variant": variant,
                             "seed": int(seed) if seed else None, "grammar": grammar,
                             **analyze_run(preds, manifest, scores, grammar=grammar, truths=truths)}
    with atomic_path(out) as tmp:
        tmp.mkdir()
        (tmp / "references.json").write_text(json_text({
            "dataset": dataset, "split": split, "grammar": grammar, "n_pairs": len(manifest),
            "coverage": {**detector_coverage(manifest), **coverage}}), encoding="utf-8")
        for name, result in results.items():
            path = tmp / f"{name}.json"
            path.parent.mkdir(exist_ok=True)
            path.write_text(json_text(result), encoding="utf-8")
    for name, result in results.items():
        c = result["counts"]
        print(f"analyze {dataset} {name}: " + ", ".join(f"{k} {v}" for k, v in c.items()), flush=True)

