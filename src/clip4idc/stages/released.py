"""`clip4idc released`: the authors' released weights of one dataset, through this pipeline.

The authors publish, for CLEVR-Change and Spot-the-Diff (their README, "Pretrained Weight"), the
adaptation checkpoint (`ckpts/pretrained/pytorch_model.bin.<clevr|spot>`) and the trained captioner
(`ckpts/trained/pytorch_model.bin.<clevr|spot>`), listed in params.yaml under `data.<dataset>.released`.
For the datasets of `released` (the paper profile: clevr_change, spot_the_diff) this stage
1. fetches both into the downloads folder as `fetch` fetches a dataset's files (data/download.py): kept
   between runs, a file placed there by hand used as it is, its sha256 recorded in DOWNLOADED.json and
   printed with the line that pins it; when Google Drive cannot be reached, the message names the file
   and the absolute path to put it at;
2. converts each, strictly, into this project's checkpoint for the profile's `model` (models/released.py:
   every key mapped, every shape checked): the captioner into a `finetune` checkpoint of the adapt
   variant, which the decode stage and `clip4idc caption` take; the adaptation checkpoint into an
   `adapt` checkpoint, as the adapt stage writes;
3. scores the adaptation checkpoint's test retrieval exactly as the adapt stage scores its own
   (metrics/retrieval.py: evaluate_retrieval, batches of `adapt.batch_size`).
The decode and evaluate stages then caption and score the test split with the converted captioner, and the
report prints both beside the reproduction and the published numbers. The authors selected both
checkpoints on the test split: their scores are test-selected.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import add_dataset

HELP = "the authors' released weights: downloaded, converted into this project's checkpoints, retrieval scored"
PARAMS = ("model", "adapt.batch_size", "data.{dataset}.released", "data.{dataset}.overrides")
KINDS = {"adapt": "adaptation checkpoint", "finetune": "trained captioner"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_dataset(p)
    p.add_argument("--downloads", required=True, help="folder that keeps the authors' files between runs "
                   "(pretrained/, trained/); put files fetched by hand here")
    p.add_argument("--data", required=True, help="prepared directory (its test split scores the retrieval)")
    p.add_argument("--adapt-out", required=True, help="the converted adaptation checkpoint to write")
    p.add_argument("--finetune-out", required=True, help="the converted captioner (a finetune checkpoint) to write")
    p.add_argument("--retrieval", required=True, help="test retrieval metrics (JSON) of the adaptation checkpoint")


def run(args: argparse.Namespace, params) -> None:
    from ..runtime import stage_threads
    released(args.dataset, params, downloads=args.downloads, prepared_dir=args.data, adapt_out=args.adapt_out,
             finetune_out=args.finetune_out, retrieval_out=args.retrieval,
             threads=stage_threads(args.threads, params.execution.resources.decode.threads),  # its rule takes decode's threads
             progress=args.progress)


def released(name: str, params, *, downloads: str | Path, prepared_dir: str | Path, adapt_out: str | Path,
             finetune_out: str | Path, retrieval_out: str | Path, threads: int | None = None,
             progress: bool = False) -> dict:
    """Fetch, convert and score dataset `name`'s released weights; → the retrieval metrics written."""
    from ..data.dataset import Prepared
    from ..data.download import fetch_file
    from ..io import write_json
    from ..metrics.retrieval import evaluate_retrieval
    from ..models.build import adapt_model_of
    from ..params import ParamsError
    from ..runtime import device, save_checkpoint, set_threads
    from ..text import CaptionTokenizer
    if name not in params.released:
        raise ParamsError(f"dataset {name!r} is not one whose released weights this profile runs (released: "
                          f"{list(params.released)}; datasets with released files: "
                          f"{sorted(d for d, p in params.data.items() if p.released)})")
    files = params.data[name].released
    prepared = Prepared(prepared_dir)          # before any download: a missing input fails at once
    set_threads(threads)
    fetched = {kind: fetch_file(name, getattr(files, kind), Path(downloads), settings=params.download,
                                progress=progress, pin_at=f"data.{name}.released.{kind}", brief=True)
               for kind in KINDS}
    # Both converted before either is written: a file the converter refuses leaves no output behind.
    converted = {kind: _converted(Path(downloads) / fetched[kind]["name"], params.model, kind) for kind in KINDS}
    model = adapt_model_of(converted["adapt"]).to(dev := device())
    tokenizer = CaptionTokenizer(params.model.arch, params.model.max_tokens)
    test = evaluate_retrieval(model, prepared, "test", tokenizer, params.adapt.batch_size, dev)
    for kind, out in (("adapt", adapt_out), ("finetune", finetune_out)):
        save_checkpoint(out, converted[kind])
        print(f"released {name}: the authors' {KINDS[kind]} {fetched[kind]['name']} ({fetched[kind]['origin']}) "
              f"-> {out}", flush=True)
    result = {"split": "test", "selected_on": "test (the authors' selection)", "epoch": None, **test,
              "source": {kind: fetched[kind] for kind in KINDS}}
    write_json(retrieval_out, result)
    print(f"released {name}: test T-IP R@1 {test['t2p']['R@1']:.2f}, IP-T R@1 {test['p2t']['R@1']:.2f}", flush=True)
    return result


def _converted(path: Path, model_cfg, kind: str) -> dict:
    """`convert_released_path`; a file it refuses ends the stage with one line naming the file, after the
    converter's list of every offending key and setting (printed above it: it can be long)."""
    from ..errors import CheckpointConversionError
    from ..models.released import convert_released_path
    try:
        return convert_released_path(path, model_cfg, kind)
    except CheckpointConversionError as err:
        first, *details = str(err).splitlines()
        if not details:
            raise
        print("\n".join(details), file=sys.stderr, flush=True)
        raise CheckpointConversionError(f"{first}; each problem is listed above") from None
