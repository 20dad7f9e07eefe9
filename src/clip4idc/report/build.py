"""`clip4idc report`: tables, figures and the ablation summary from one run's files, nothing else.

Exactly the files the params imply are read, for every dataset of the run:
- metric files: every variant × seed (`seeds`), the constant baseline, the adaptation retrieval
  (`<metrics>/<dataset>/...`); for a dataset of `released`, also the authors' released captioner's scores
  and their adaptation checkpoint's retrieval (`released.json`, `released_retrieval.json`);
- training histories: adaptation and every variant × seed (`<train>/<dataset>/...`);
- the first seed's captions of every variant with the test manifest and the pairs' images, for the
  qualitative figure only (`<predictions>/<dataset>/...`, `<prepared>/<dataset>`, `<raw>/<dataset>`);
- the error analysis of every variant × seed and of the constant caption (`<analysis>/<dataset>/...`, written by
  `clip4idc analyze`): the failure and wrong-attribute tables, the confusion figure and the failure gallery.
A missing one is an error, never a gap. Every number printed comes from these files or from
`published.py`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..data.prepared import Prepared
from ..io import atomic_paths, json_text, read_json
from ..metrics.caption import METRIC_KEYS
from ..params import VARIANTS, Params, captioner_files
from .plots import ablation_plot, per_type_plot, retrieval_plot, training_curves_plot
from .analysis_plots import confusion_plot
from .failures import attribute_table, failure_table, gallery_examples, load_analyses
from .published import RETRIEVAL
from .qualitative import qualitative_examples, qualitative_plot
from .tables import HEADER, ablation_overview, dataset_tables, load_metric_runs, summarise_runs, validate_metric_file


@dataclass(frozen=True)
class ReportInputs:
    """The folders the report reads, each holding one subfolder per dataset."""
    metrics: Path | str
    train: Path | str
    predictions: Path | str
    prepared: Path | str
    raw: Path | str
    analysis: Path | str


def _require(files: dict[str, Path], what: str) -> dict[str, Path]:
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"report: {len(missing)} {what} missing: {missing}. Under DVC, a profile "
                                f"that changes `seeds`, `datasets` or `released` needs them set at the top level "
                                f"of params.yaml too (README: 'Parameters and profiles')")
    return files


def metric_files(metrics_dir: str | Path, seeds: Sequence[int], released: bool = False) -> dict[str, Path]:
    """The metric files of one dataset, in its folder `metrics_dir` (`released`: with the released weights')."""
    root = Path(metrics_dir)
    files = captioner_files(root, seeds, released)
    files["retrieval"] = root / "adapt_retrieval.json"
    if released:
        files["released_retrieval"] = root / "released_retrieval.json"
    return _require(files, "metric file(s)")


def analysis_files(analysis_dir: str | Path, seeds: Sequence[int], released: bool = False) -> dict[str, Path]:
    """The error analyses of one dataset (`clip4idc analyze`), in its folder `analysis_dir`."""
    return _require(captioner_files(analysis_dir, seeds, released), "analysis file(s) (clip4idc analyze)")


def history_files(train_dir: str | Path, seeds: Sequence[int]) -> dict[str, Path]:
    """The training histories of one dataset, in its folder `train_dir`."""
    root = Path(train_dir)
    files = {f"{v}/seed{s}": root / "finetune" / v / f"seed{s}.json" for v in VARIANTS for s in seeds}
    files["adapt"] = root / "adapt.json"
    return _require(files, "training histories")


def _has_subsets(runs: dict[str, list[dict]]) -> bool:
    return any(run.get("subsets") for group in runs.values() for run in group)


def summary_of(runs: dict[str, list[dict]], baseline: dict, released: dict | None = None) -> dict:
    """{variant: {"n_seeds", "mean": {metric}, "sd": {metric}}}, the constant baseline's metrics and (`released`)
    the authors' released captioner's, raw scale: numbers only, so that `dvc metrics show` / `dvc exp show`
    list each as a column."""
    out = {}
    for variant, group in runs.items():
        s = summarise_runs(group)
        out[variant] = {"n_seeds": s["n"], "mean": s["mean"], **({"sd": s["sd"]} if s["n"] > 1 else {})}
    out["constant"] = {"mean": {k: baseline["metrics"][k] for k in METRIC_KEYS}}
    if released is not None:
        out["released"] = {"mean": {k: released["metrics"][k] for k in METRIC_KEYS}}
    return out


def dataset_report(params: Params, name: str, inputs: ReportInputs,
                   plots_dir: Path) -> tuple[list[str], dict[str, list[dict]], dict, dict | None]:
    """One dataset's tables and figures; → (LaTeX lines, {variant: metric files by seed}, baseline, the released
    weights' metric file or None)."""
    dataset, seeds = params.data[name], params.seeds
    label, comparable = dataset.label, dataset.source == "download"
    files = metric_files(Path(inputs.metrics) / name, seeds, released=name in params.released)
    histories = history_files(Path(inputs.train) / name, seeds)
    runs = load_metric_runs([files[f"{v}/seed{s}"] for v in VARIANTS for s in seeds])
    baseline = validate_metric_file(read_json(files["constant"]), str(files["constant"]))
    retrieval = read_json(files["retrieval"])
    released = released_retrieval = None
    if "released" in files:
        released = validate_metric_file(read_json(files["released"]), str(files["released"]))
        released_retrieval = read_json(files["released_retrieval"])

    def figure(kind: str) -> tuple[Path, Path]:
        stem = plots_dir / f"{kind}-{name}"
        return stem.with_suffix(".png"), stem.with_suffix(".pdf")

    ablation_plot(runs, baseline, *figure("ablation"), title=f"Ablation on {label}")
    training_curves_plot({v: [read_json(histories[f"{v}/seed{s}"]) for s in seeds] for v in VARIANTS},
                         read_json(histories["adapt"]), *figure("training"), title=f"Training on {label}",
                         select_metric=params.finetune.select_metric)
    retrieval_plot(retrieval, RETRIEVAL.get(dataset.format), *figure("retrieval"),
                   title=f"Adaptation-stage retrieval on {label}", comparable=comparable)
    if _has_subsets(runs):
        per_type_plot(runs, baseline, *figure("per_type"), title=f"Scores by pair set on {label}")
    # The qualitative figure: the first seed's captions, on pairs picked by position only.
    split = params.decode.split
    predictions = {v: read_json(_require({v: Path(inputs.predictions) / name / v / f"seed{seeds[0]}.json"},
                                         "prediction file(s)")[v]) for v in VARIANTS}
    manifest = Prepared(Path(inputs.prepared) / name).manifest(split)
    image_root = Path(inputs.raw) / name / params.data[name].root
    qualitative_plot(qualitative_examples(manifest, predictions), image_root,
                     *figure("qualitative"), title=f"{label}, {split} split: captions of seed {seeds[0]}")
    # The error analysis: what each variant gets wrong (clip4idc analyze), and the adapted model's worst pairs.
    analyses, others = load_analyses(analysis_files(Path(inputs.analysis) / name, seeds, name in params.released),
                                     seeds)
    if all("confusion" in a for group in analyses.values() for a in group):
        confusion_plot({v: [a["confusion"] for a in group] for v, group in analyses.items()}, *figure("confusion"),
                       title=f"Change type on {label}: true vs caption")
    qualitative_plot(gallery_examples(manifest, {v: group[0] for v, group in analyses.items()}), image_root,
                     *figure("failures"), title=f"{label}, {split} split: the adapted model's lowest-scoring pairs "
                                                f"(seed {seeds[0]})")

    lines = dataset_tables(variants=runs, baseline=baseline, retrieval=retrieval, dataset_label=label,
                           published_dataset=dataset.format, comparable=comparable, key=name,
                           released=released, released_retrieval=released_retrieval)
    lines += failure_table(analyses, others, label, f":{name}")
    lines += attribute_table(analyses, label, f":{name}")
    return lines, runs, baseline, released


def build_report(params: Params, inputs: ReportInputs, *, tables: str | Path, plots_dir: str | Path,
                 summary: str | Path) -> None:
    """results/tables.tex (the overview, then a section per dataset), `<plots_dir>/<kind>-<dataset>.{png,pdf}`
    and the summary JSON."""
    sections, summaries, all_runs = [], {}, {}
    # Tables, figures and summary are written to temporary paths and moved into place together at the end:
    # a missing or bad input, or an output that cannot be replaced, leaves the previous report whole (never
    # new figures beside old tables).
    with atomic_paths(plots_dir, tables, summary) as (figures, tables_tmp, summary_tmp):
        figures.mkdir()
        for name in params.datasets:
            lines, all_runs[name], baseline, released = dataset_report(params, name, inputs, figures)
            summaries[name] = summary_of(all_runs[name], baseline, released)
            sections += [f"% --- {name}: {params.data[name].label} ---", "", *lines]
        overview = ablation_overview(all_runs, {name: params.data[name].label for name in params.datasets})
        tables_tmp.write_text("\n".join([*HEADER, *overview, *sections]), encoding="utf-8")
        summary_tmp.write_text(json_text(summaries), encoding="utf-8")
