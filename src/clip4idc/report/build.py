"""`clip4idc report`: tables and the ablation plot from one run's metric files, nothing else.

Exactly the files the params imply are read (every variant x finetune.seeds, the constant
baseline, the adaptation retrieval metrics); a missing one is an error, never a gap.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..io import read_json
from ..params import VARIANTS
from .plots import ablation_plot
from .tables import load_metric_runs, validate_metric_file, write_tables


def metric_files(metrics_dir: str | Path, seeds: Sequence[int]) -> dict[str, Path]:
    root = Path(metrics_dir)
    files = {f"{v}/seed{s}": root / v / f"seed{s}.json" for v in VARIANTS for s in seeds}
    files["constant"] = root / "constant.json"
    files["retrieval"] = root / "adapt_retrieval.json"
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"report: {len(missing)} metric file(s) missing: {missing}")
    return files


def build_report(metrics_dir: str | Path, seeds: Sequence[int], tables: str | Path, plot: str | Path,
                 dataset_label: str) -> None:
    files = metric_files(metrics_dir, seeds)
    runs = load_metric_runs([files[f"{v}/seed{s}"] for v in VARIANTS for s in seeds])
    baseline = validate_metric_file(read_json(files["constant"]), str(files["constant"]))
    retrieval = read_json(files["retrieval"])
    variants = {v: runs[v] if len(runs[v]) > 1 else runs[v][0] for v in VARIANTS}
    write_tables(tables, variants=variants, baseline=baseline, retrieval=retrieval, dataset_label=dataset_label)
    plot = Path(plot)
    ablation_plot(variants, baseline, plot.with_suffix(".png"), plot.with_suffix(".pdf"),
                  title=f"Ablation on {dataset_label}")
