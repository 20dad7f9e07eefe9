"""The per-epoch training log in dvclive's layout, which `dvc plots` and `dvc exp show` read.

`<dir>/plots/metrics/train/loss.tsv`, `<dir>/plots/metrics/<split>/<metric>.tsv` (columns step,
value; step = epoch, from 1) and `<dir>/metrics.json` (the last epoch). The Snakemake report shows
the same numbers as the report stage's training-curve figure.

The log is a function of the loop's history, not an append-only stream: after every epoch it is
written anew from the whole history, into a temporary folder renamed into place. So a resumed run
(whose history comes from its checkpoint) and a discarded one (an old resume file ignored) can
never leave epochs in the log that the checkpoint does not have.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from ..io import atomic_path

# Sizes of the scored set, the same every epoch: not curves.
_COUNTS = ("n_pairs", "n_texts")


def _leaves(record: dict[str, Any], prefix: str) -> Iterator[tuple[str, float]]:
    for key, value in record.items():
        if key in _COUNTS:
            continue
        name = f"{prefix}/{key}"
        if isinstance(value, dict):
            yield from _leaves(value, name)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            yield name, float(value)


def epoch_metrics(record: dict[str, Any]) -> dict[str, float]:
    """A history record {"epoch", "loss", <split>: {...}} as flat dvclive names: train/loss, val/CIDEr,
    val/t2p/R@1, ..."""
    out = {"train/loss": float(record["loss"])}
    for key, value in record.items():
        if isinstance(value, dict):
            out.update(_leaves(value, key))
    return out


def write_training_log(directory: str | Path, history: list[dict[str, Any]]) -> None:
    """(Re)write the dvclive folder `directory` from `history` (one record per finished epoch)."""
    from dvclive import Live  # imported here: dvclive pulls in DVC's modules, which take a while

    with atomic_path(directory) as tmp:
        tmp.mkdir()
        # No experiment commit, no dvc.yaml edits, no report: the pipeline's dvc.yaml declares the plots.
        live = Live(dir=str(tmp), save_dvc_exp=False, dvcyaml=None, report=None, monitor_system=False)
        for record in history:
            live.step = int(record["epoch"])
            for name, value in epoch_metrics(record).items():
                live.log_metric(name, value)
            live.make_summary()
        live.end()
