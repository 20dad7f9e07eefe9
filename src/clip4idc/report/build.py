"""`clip4idc report`: tables and ablation plots from one run's metric files, nothing else.

Exactly the files the params imply are read: for every dataset of the run, every variant x
finetune.seeds, the constant baseline and the adaptation retrieval metrics, under
`<metrics_dir>/<dataset>/`. A missing one is an error, never a gap.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..io import read_json, write_text
from ..params import VARIANTS, Params
from .plots import ablation_plot
from .tables import HEADER, dataset_tables, load_metric_runs, validate_metric_file


def metric_files(metrics_dir: str | Path, seeds: Sequence[int]) -> dict[str, Path]:
    """The metric files of one dataset, in its folder `metrics_dir`."""
    root = Path(metrics_dir)
    files = {f"{v}/seed{s}": root / v / f"seed{s}.json" for v in VARIANTS for s in seeds}
    files["constant"] = root / "constant.json"
    files["retrieval"] = root / "adapt_retrieval.json"
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"report: {len(missing)} metric file(s) missing: {missing}. Under DVC, a profile "
                                f"that changes finetune.seeds or datasets needs them set at the top level of "
                                f"params.yaml too (README: 'Parameters and profiles')")
    return files


def dataset_report(metrics_dir: str | Path, seeds: Sequence[int], plot: str | Path, *, label: str,
                   published: str, comparable: bool, key: str | None = None) -> list[str]:
    """One dataset's tables (returned as LaTeX lines) and its ablation plot (`plot`.png/.pdf)."""
    files = metric_files(metrics_dir, seeds)
    runs = load_metric_runs([files[f"{v}/seed{s}"] for v in VARIANTS for s in seeds])
    baseline = validate_metric_file(read_json(files["constant"]), str(files["constant"]))
    variants = {v: runs[v] if len(runs[v]) > 1 else runs[v][0] for v in VARIANTS}
    plot = Path(plot)
    ablation_plot(variants, baseline, plot.with_suffix(".png"), plot.with_suffix(".pdf"),
                  title=f"Ablation on {label}")
    return dataset_tables(variants=variants, baseline=baseline, retrieval=read_json(files["retrieval"]),
                          dataset_label=label, published_dataset=published, comparable=comparable, key=key)


def build_report(params: Params, metrics_dir: str | Path, tables: str | Path, plots_dir: str | Path) -> None:
    """results/tables.tex (a section per dataset) and `<plots_dir>/ablation-<dataset>.{png,pdf}`."""
    lines = list(HEADER)
    for name in params.datasets:
        dataset = params.data[name]
        lines += [f"% --- {name}: {dataset.label} ---", ""]
        # Published numbers are for the real datasets; a stand-in in the same format is compared
        # for orientation only (its captions say so).
        lines += dataset_report(Path(metrics_dir) / name, params.finetune.seeds,
                                Path(plots_dir) / f"ablation-{name}", label=dataset.label,
                                published=dataset.format, comparable=dataset.source == "download", key=name)
    write_text(tables, "\n".join(lines))
