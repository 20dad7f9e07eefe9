"""Figures of the report (PNG for reading, PDF for papers), each from the files a stage wrote.

- `ablation_plot`: caption metrics of the three variants, the constant baseline as a floor.
- `training_curves_plot`: loss and validation score per epoch of fine-tuning (and adaptation), with
  the epoch each run selected, so early stopping and over-fitting are visible.
- `retrieval_plot`: adaptation-stage retrieval R@K, reproduced beside published.
- `per_type_plot`: one metric on the change / no-change pairs and on each change type.
- the qualitative figure (before/after images with captions) lives in `qualitative.py`.
- the error analysis's confusion figure (true vs caption change type) lives in `analysis_plots.py`.

Figures are drawn on a bare `matplotlib.figure.Figure`, never through pyplot, so no backend is
selected globally and nothing opens a window: saving to PNG/PDF picks the Agg/PDF renderers.
All figures share `figure_style()` and the variant colours below, and each function returns the Figure
it drew so tests can inspect what was plotted.
"""
from __future__ import annotations

import os
from statistics import mean, stdev
from typing import Mapping, Sequence

from matplotlib import rc_context
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from ..io import atomic_path
from ..metrics.caption import METRIC_KEYS
from . import BASELINE_LABEL, METRIC_LABELS, VARIANT_LABELS, is_finite_number
from .published import PublishedRetrieval
from .tables import as_runs, check_variants, pair_sets, summarise_runs, validate_retrieval_file

# Okabe-Ito colours: distinguishable with colour-blindness and in greyscale print.
VARIANT_COLORS = {"clip-ft": "#E69F00", "no-adapt": "#56B4E9", "adapt": "#009E73"}
BASELINE_COLOR = "#555555"
# The adaptation stage is not a variant: its own Okabe-Ito colour (reddish purple).
ADAPT_STAGE_COLOR = "#CC79A7"
SD_LABEL = "±1 sd over seeds"
SELECTED_LABEL = "selected epoch (one marker per run)"
# CIDEr (up to 10, ×100 -> hundreds) would flatten the other metrics, so it gets its own panel.
_LARGE_SCALE = ("CIDEr",)
_DIRECTIONS = {"t2p": "T-IP (caption → pair)", "p2t": "IP-T (pair → captions)"}
_RECALLS = ("R@1", "R@5", "R@10")
PNG_DPI = 150


def figure_style() -> dict:
    """rcParams shared by every figure of the report."""
    return {
        "font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8,
        "xtick.labelsize": 8, "ytick.labelsize": 8, "figure.titlesize": 11,
        "axes.spines.top": False, "axes.spines.right": False,
        "axes.grid": True, "axes.grid.axis": "y", "grid.alpha": 0.3, "axes.axisbelow": True,
        "pdf.fonttype": 42,  # embed TrueType so PDF text stays text
        "svg.fonttype": "none",
    }


def save_figure(fig: Figure, out_png: str | os.PathLike, out_pdf: str | os.PathLike) -> None:
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=PNG_DPI)
    with atomic_path(out_pdf) as tmp:
        # No creation date: the same inputs give the same bytes.
        fig.savefig(tmp, format="pdf", metadata={"CreationDate": None})


def _mean_sd(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample sd (None for a single value: one seed has no spread to show)."""
    return mean(values), (stdev(values) if len(values) > 1 else None)


def _finite(value, source: str) -> float:
    if not is_finite_number(value):
        raise ValueError(f"{source}: expected a finite number, got {value!r}")
    return float(value)


# -- bars ---------------------------------------------------------------------------------------
def _value_labels(ax, xs: Sequence[float], heights: Sequence[float], errs: Sequence[float] | None, *,
                  rotation: int = 90) -> None:
    """Print each bar's value above its error bar (not on it); the caller leaves head-room."""
    for i, (x, h) in enumerate(zip(xs, heights)):
        top = h + (errs[i] if errs else 0.0)
        # A white box keeps the label readable where a baseline line crosses it.
        ax.annotate(f"{h:.1f}", (x, top), xytext=(0, 2), textcoords="offset points", ha="center", va="bottom",
                    rotation=rotation, fontsize=7, bbox={"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none",
                                                         "alpha": 0.8}, zorder=4, annotation_clip=False)


def _grouped_bars(ax, tick_labels: Sequence[str], series: Mapping[str, tuple[list[float], list[float] | None]],
                  baseline: Sequence[float] | None) -> None:
    """One group of bars per tick label, one bar per variant (mean, error bar = sd where given),
    the baseline as a dashed line across each group. Values already on the plotted scale."""
    n = len(series)
    width = 0.8 / n
    for i, (variant, (heights, errs)) in enumerate(series.items()):
        xs = [k + (i - (n - 1) / 2) * width for k in range(len(tick_labels))]
        ax.bar(xs, heights, width * 0.92, yerr=errs, capsize=2 if errs else 0,
               color=VARIANT_COLORS[variant], label=VARIANT_LABELS[variant],
               error_kw={"elinewidth": 0.8, "ecolor": "#333333"})
        _value_labels(ax, xs, heights, errs)
    if baseline is not None:
        for k, value in enumerate(baseline):
            ax.hlines(value, k - 0.45, k + 0.45, colors=BASELINE_COLOR, linestyles="--", linewidth=1.2, zorder=3)
    ax.set_xticks(range(len(tick_labels)), tick_labels)
    ax.set_xlim(-0.6, len(tick_labels) - 0.4)
    top = max([h + (e[j] if e else 0) for h_list, e in series.values() for j, h in enumerate(h_list)]
              + list(baseline or []))
    ax.set_ylim(0, max(top, 1e-6) * 1.25)  # head-room for the rotated value labels


def _bar_legend(fig: Figure, ax, baseline: bool, several_seeds: bool) -> None:
    """Figure legend below the panels (never over the bars): variants, baseline, error bar."""
    handles, labels = ax.get_legend_handles_labels()
    if baseline:
        handles.append(Line2D([], [], color=BASELINE_COLOR, linestyle="--", linewidth=1.2))
        labels.append(BASELINE_LABEL)
    if several_seeds:
        handles.append(Line2D([], [], color="#333333", marker="|", markersize=9, linestyle="none"))
        labels.append(SD_LABEL)
    # Three columns need about 8 inches (the baseline's label is long); narrower figures get two.
    ncols = min(len(labels), 3 if fig.get_figwidth() >= 8 else 2)
    fig.legend(handles, labels, loc="outside lower center", ncols=ncols, frameon=False)


def ablation_plot(variants: Mapping[str, dict | list[dict]], baseline: dict | list[dict] | None,
                  out_png: str | os.PathLike, out_pdf: str | os.PathLike, *,
                  title: str | None = None) -> Figure:
    """Grouped bars of the caption metrics (×100) of each variant, baseline as a dashed line.

    A variant is one metric file's content or a list of them (one per seed): bars show the mean,
    and with several seeds an error bar of one sample sd.
    """
    runs = check_variants(variants)
    base = summarise_runs(as_runs(baseline, "baseline")) if baseline is not None else None
    summaries = {v: summarise_runs(r) for v, r in runs.items()}
    first = next(iter(runs.values()))[0]
    if title is None:
        title = f"CLIP4IDC ablation ({first['split']} split, {first['n_pairs']} pairs)"

    def series(keys):
        return {v: ([100 * s["mean"][k] for k in keys], [100 * s["sd"][k] for k in keys] if s["n"] > 1 else None)
                for v, s in summaries.items()}

    small = [k for k in METRIC_KEYS if k not in _LARGE_SCALE]
    large = [k for k in METRIC_KEYS if k in _LARGE_SCALE]
    with rc_context(figure_style()):
        fig = Figure(figsize=(9.0, 4.2), layout="constrained")
        ax_small, ax_large = fig.subplots(1, 2, width_ratios=[len(small), len(large) + 0.6])
        for ax, keys in ((ax_small, small), (ax_large, large)):
            _grouped_bars(ax, [METRIC_LABELS[k] for k in keys], series(keys),
                          [100 * base["mean"][k] for k in keys] if base else None)
            ax.set_ylabel("score (×100)")
        _bar_legend(fig, ax_small, base is not None, any(s["n"] > 1 for s in summaries.values()))
        fig.suptitle(title)
        save_figure(fig, out_png, out_pdf)
    return fig


# -- training curves ----------------------------------------------------------------------------
def _history(content, source: str) -> tuple[list[dict], int, str]:
    """(history records, selected epoch, key of the validation scores) of a history file's content."""
    if not isinstance(content, Mapping) or "history" not in content or "selected_epoch" not in content:
        raise ValueError(f"{source}: expected a training history, an object with keys 'history' and "
                         f"'selected_epoch'")
    history = content["history"]
    if not isinstance(history, list) or not history:
        raise ValueError(f"{source}: 'history' must be a non-empty list of per-epoch records")
    for i, record in enumerate(history):
        if not isinstance(record, Mapping) or "epoch" not in record or "loss" not in record:
            raise ValueError(f"{source}: history[{i}] needs keys 'epoch' and 'loss'")
        _finite(record["loss"], f"{source}: history[{i}].loss")
    epochs = [r["epoch"] for r in history]
    if epochs != sorted(set(epochs)):
        raise ValueError(f"{source}: history epochs must increase, got {epochs}")
    if content["selected_epoch"] not in epochs:
        raise ValueError(f"{source}: selected_epoch {content['selected_epoch']!r} is not in the history {epochs}")
    # Fine-tuning names the split it selects on; adaptation's record holds exactly one other key.
    key = content.get("selected_on")
    if key is None:
        others = sorted({k for r in history for k in r} - {"epoch", "loss"})
        if len(others) != 1:
            raise ValueError(f"{source}: cannot tell which key holds the validation scores among {others}")
        key = others[0]
    for i, record in enumerate(history):
        if not isinstance(record.get(key), Mapping):
            raise ValueError(f"{source}: history[{i}] has no validation scores under {key!r}")
    return history, content["selected_epoch"], key


def _per_epoch(series: Sequence[Mapping[int, float]]) -> tuple[list[int], list[float], list[float | None], list[int]]:
    """Mean and sd per epoch over the runs that reached it (early stopping ends runs at different epochs)."""
    epochs = sorted({e for s in series for e in s})
    stats = [_mean_sd([s[e] for s in series if e in s]) for e in epochs]
    counts = [sum(e in s for s in series) for e in epochs]
    return epochs, [m for m, _ in stats], [sd for _, sd in stats], counts


def _curve(ax, series: Sequence[Mapping[int, float]], selected: Sequence[int], color: str, *, dx: float = 0.0,
           linestyle: str = "-", label: str | None = None) -> None:
    """Mean over runs per epoch, ±1 sd where several runs reached an epoch (a band, or an error bar where
    the epoch has no such neighbour to span a band to), and a star at each run's selected epoch."""
    epochs, means, sds, counts = _per_epoch(series)
    xs = [e + dx for e in epochs]
    ax.plot(xs, means, color=color, linestyle=linestyle, marker="o", markersize=3, linewidth=1.5, label=label,
            zorder=3)
    spread = [n > 1 for n in counts]
    if any(spread):
        lo = [m - (s or 0) for m, s in zip(means, sds)]
        hi = [m + (s or 0) for m, s in zip(means, sds)]
        ax.fill_between(xs, lo, hi, where=spread, color=color, alpha=0.2, linewidth=0, zorder=2)
        alone = [i for i, ok in enumerate(spread)
                 if ok and not (i > 0 and spread[i - 1]) and not (i + 1 < len(spread) and spread[i + 1])]
        if alone:
            ax.errorbar([xs[i] for i in alone], [means[i] for i in alone], yerr=[sds[i] for i in alone],
                        fmt="none", ecolor=color, elinewidth=1.0, capsize=3, zorder=3)
    for run, epoch in zip(series, selected):
        ax.plot([epoch + dx], [run[epoch]], linestyle="none", marker="*", markersize=10, markerfacecolor=color,
                markeredgecolor="black", markeredgewidth=0.6, zorder=5)


def _epoch_axis(ax, last_epoch: int) -> None:
    ax.set_xlabel("epoch")
    ax.set_xlim(0.5, last_epoch + 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10], min_n_ticks=1))


def training_curves_plot(finetune: Mapping[str, dict | list[dict]], adapt: dict | None,
                         out_png: str | os.PathLike, out_pdf: str | os.PathLike, *, title: str | None = None,
                         select_metric: str = "CIDEr") -> Figure:
    """Loss and validation score per epoch: fine-tuning of each variant (mean ± sd over seeds) and, if
    `adapt` is given, the adaptation stage (loss, validation R@1 of both directions).

    `finetune`: {variant: history file content or a list of them, one per seed}. A star marks the epoch
    each run selected (its checkpoint), so a reader sees where early stopping ended a run.
    """
    if not finetune:
        raise ValueError(f"finetune: expected histories of some of {list(VARIANT_LABELS)}")
    unknown = [v for v in finetune if v not in VARIANT_LABELS]
    if unknown:
        raise ValueError(f"finetune: unknown variant names {unknown}; expected some of {list(VARIANT_LABELS)}")
    if select_metric not in METRIC_KEYS:
        raise ValueError(f"select_metric: {select_metric!r} is not one of {list(METRIC_KEYS)}")
    runs: dict[str, list[tuple[list[dict], int, str]]] = {}
    for variant in (v for v in VARIANT_LABELS if v in finetune):
        contents = finetune[variant] if isinstance(finetune[variant], (list, tuple)) else [finetune[variant]]
        if not contents:
            raise ValueError(f"finetune[{variant!r}]: expected at least one history")
        runs[variant] = [_history(c, f"finetune[{variant!r}][{i}]") for i, c in enumerate(contents)]
        for i, (history, _, key) in enumerate(runs[variant]):
            for record in history:
                if select_metric not in record[key]:
                    raise ValueError(f"finetune[{variant!r}][{i}]: epoch {record['epoch']} has no {key} "
                                     f"{select_metric!r} (has {sorted(record[key])})")
    split = next(iter(runs.values()))[0][2]
    adapt_run = _history(adapt, "adapt") if adapt is not None else None
    several = any(len(r) > 1 for r in runs.values())
    if title is None:
        n_seeds = max(len(r) for r in runs.values())
        title = f"Training curves ({'mean ± 1 sd over ' + str(n_seeds) + ' seeds' if several else 'one seed'})"

    with rc_context(figure_style()):
        fig = Figure(figsize=(9.0, 6.4 if adapt_run else 3.6), layout="constrained")
        axes = fig.subplots(2 if adapt_run else 1, 2, squeeze=False)
        ax_loss, ax_score = axes[0]
        last = max(r[0][-1]["epoch"] for group in runs.values() for r in group)
        # Variants share epochs: a small sideways shift keeps their markers and error bars apart.
        n = len(runs)
        for i, (variant, group) in enumerate(runs.items()):
            dx = (i - (n - 1) / 2) * 0.08
            selected = [sel for _, sel, _ in group]
            loss = [{r["epoch"]: float(r["loss"]) for r in h} for h, _, _ in group]
            score = [{r["epoch"]: 100 * _finite(r[key][select_metric], f"finetune[{variant!r}] {select_metric}")
                      for r in h} for h, _, key in group]
            color = VARIANT_COLORS[variant]
            _curve(ax_loss, loss, selected, color, dx=dx, label=VARIANT_LABELS[variant])
            _curve(ax_score, score, selected, color, dx=dx)
        ax_loss.set_title("Fine-tuning: training loss")
        ax_loss.set_ylabel("token cross-entropy (nats),\nchange + no-change summed")
        ax_score.set_title(f"Fine-tuning: {split} {METRIC_LABELS[select_metric]} (selects the epoch)")
        ax_score.set_ylabel(f"{split} {METRIC_LABELS[select_metric]} (×100)")
        ax_score.set_ylim(bottom=0)
        for ax in (ax_loss, ax_score):
            _epoch_axis(ax, last)

        handles, labels = ax_loss.get_legend_handles_labels()
        if adapt_run:
            history, selected, key = adapt_run
            ax_aloss, ax_ar1 = axes[1]
            _curve(ax_aloss, [{r["epoch"]: float(r["loss"]) for r in history}], [selected], ADAPT_STAGE_COLOR)
            recall = {}
            for direction in _DIRECTIONS:
                recall[direction] = {r["epoch"]: _finite(r[key].get(direction, {}).get("R@1"),
                                                          f"adapt: epoch {r['epoch']} {key}.{direction}.R@1")
                                     for r in history}
            # T-IP R@1 selects the adaptation epoch, so the star sits on its curve.
            _curve(ax_ar1, [recall["t2p"]], [selected], ADAPT_STAGE_COLOR)
            ax_ar1.plot(list(recall["p2t"]), list(recall["p2t"].values()), color=ADAPT_STAGE_COLOR,
                        linestyle="--", marker="s", markersize=3, linewidth=1.2, zorder=3)
            ax_aloss.set_title("Adaptation: training loss")
            ax_aloss.set_ylabel("symmetric InfoNCE (nats),\nmean of T-IP and IP-T")
            ax_ar1.set_title(f"Adaptation: {key} retrieval R@1")
            ax_ar1.set_ylabel(f"{key} R@1 (%)")
            ax_ar1.set_ylim(0, 100)
            for ax in (ax_aloss, ax_ar1):
                _epoch_axis(ax, history[-1]["epoch"])
            handles += [Line2D([], [], color=ADAPT_STAGE_COLOR, marker="o", markersize=3),
                        Line2D([], [], color=ADAPT_STAGE_COLOR, linestyle="--", marker="s", markersize=3)]
            labels += ["adaptation (loss; T-IP R@1, selects the epoch)", "adaptation: IP-T R@1"]
        if several:
            handles.append(Patch(color="#777777", alpha=0.3, linewidth=0))
            labels.append(SD_LABEL)
        handles.append(Line2D([], [], linestyle="none", marker="*", markersize=10, markerfacecolor="white",
                              markeredgecolor="black", markeredgewidth=0.6))
        labels.append(SELECTED_LABEL)
        fig.legend(handles, labels, loc="outside lower center", ncols=3, frameon=False)
        fig.suptitle(title)
        save_figure(fig, out_png, out_pdf)
    return fig


# -- retrieval ----------------------------------------------------------------------------------
def retrieval_plot(retrieval: dict, published: PublishedRetrieval | None, out_png: str | os.PathLike,
                   out_pdf: str | os.PathLike, *, title: str | None = None, comparable: bool = False) -> Figure:
    """R@1/5/10 (percent) of the adaptation-stage retrieval, one panel per direction, the published
    numbers beside (hatched). `comparable`: the run used the very dataset `published` is for."""
    retrieval = validate_retrieval_file(retrieval, "retrieval")
    if title is None:
        title = f"Adaptation-stage retrieval ({retrieval['split']} split)"
    reproduced_label = (f"reproduced ({retrieval['split']} split, {retrieval['n_pairs']} pairs, "
                        f"{retrieval['n_texts']} captions)")
    color = VARIANT_COLORS["adapt"]
    with rc_context(figure_style()):
        fig = Figure(figsize=(8.0, 3.8), layout="constrained")
        axes = fig.subplots(1, 2, sharey=True)
        for ax, (direction, name) in zip(axes, _DIRECTIONS.items()):
            block = retrieval[direction]
            pub = dict(getattr(published, direction)) if published is not None else {}
            has_pub = all(k in pub for k in _RECALLS)
            width = 0.38 if has_pub else 0.6
            xs = [k - width / 2 if has_pub else k for k in range(len(_RECALLS))]
            heights = [float(block[k]) for k in _RECALLS]
            ax.bar(xs, heights, width * 0.95, color=color, label=reproduced_label)
            _value_labels(ax, xs, heights, None, rotation=0)
            if has_pub:
                pxs = [x + width for x in xs]
                pheights = [float(pub[k]) for k in _RECALLS]
                note = "" if comparable else ", not comparable"
                ax.bar(pxs, pheights, width * 0.95, color=(*to_rgb(color), 0.3), edgecolor=color, hatch="///",
                       linewidth=0.8, label=f"published ({published.dataset}{note})")
                _value_labels(ax, pxs, pheights, None, rotation=0)
            ranks = f"MedR {float(block['MedR']):g}, MeanR {float(block['MeanR']):.1f}"
            if all(k in pub for k in ("MedR", "MeanR")):
                ranks += f" (published {float(pub['MedR']):g}, {float(pub['MeanR']):.1f})"
            ax.set_title(f"{name}\n{ranks}")
            ax.set_xticks(range(len(_RECALLS)), _RECALLS)
            ax.set_xlim(-0.6, len(_RECALLS) - 0.4)
            # Ticks end at 100 %; the head-room above holds the value labels of bars near 100.
            ax.set_ylim(0, 109)
            ax.set_yticks(range(0, 101, 20))
        axes[0].set_ylabel("recall (%)")
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncols=len(labels), frameon=False)
        fig.suptitle(title)
        save_figure(fig, out_png, out_pdf)
    return fig


# -- per change type ----------------------------------------------------------------------------
def per_type_plot(variants: Mapping[str, dict | list[dict]], baseline: dict | list[dict] | None,
                  out_png: str | os.PathLike, out_pdf: str | os.PathLike, *, metric: str = "CIDEr",
                  title: str | None = None) -> Figure:
    """`metric` (×100) on the change pairs, the no-change pairs and the change pairs of each type, bars per
    variant (mean ± sd over seeds), the constant baseline as a dashed line. Each pair set is scored as a
    corpus of its own, so the bars of different sets are not parts of the total."""
    if metric not in METRIC_KEYS:
        raise ValueError(f"metric: {metric!r} is not one of {list(METRIC_KEYS)}")
    runs = check_variants(variants)
    base_runs = as_runs(baseline, "baseline") if baseline is not None else None
    # The same check as the per-type table's: every run, baseline included, scored on the same pair sets.
    sizes = pair_sets(runs | ({"constant baseline": base_runs} if base_runs else {}), "per_type_plot")
    if not sizes:
        raise ValueError("per_type_plot: the metric files have no 'subsets' (change / no-change / change types); "
                         "a per-type figure needs a dataset scored by pair set")
    groups = list(sizes)
    series = {}
    for variant, group_runs in runs.items():
        stats = [summarise_runs(group_runs, g) for g in groups]
        series[variant] = ([100 * s["mean"][metric] for s in stats],
                           [100 * s["sd"][metric] for s in stats] if len(group_runs) > 1 else None)
    base = [100 * summarise_runs(base_runs, g)["mean"][metric] for g in groups] if base_runs else None
    first = next(iter(runs.values()))[0]
    if title is None:
        title = f"{METRIC_LABELS[metric]} by pair set ({first['split']} split)"
    labels = [f"{g}\n(n={sizes[g]})" for g in groups]
    with rc_context(figure_style()):
        fig = Figure(figsize=(max(7.0, 1.0 + 1.2 * len(groups)), 4.2), layout="constrained")
        ax = fig.subplots()
        _grouped_bars(ax, labels, series, base)
        # Change / no-change are sets of pairs; the change types split the change set: keep them apart.
        typed = [i for i, g in enumerate(groups) if g not in ("change", "no-change")]
        if typed and typed[0] > 0:
            ax.axvline(typed[0] - 0.5, color="#999999", linewidth=0.8, linestyle=":")
        ax.set_ylabel(f"{METRIC_LABELS[metric]} (×100)")
        ax.set_xlabel("pair set (n = pairs in the set)")
        _bar_legend(fig, ax, base is not None, any(s[1] is not None for s in series.values()))
        fig.suptitle(title)
        save_figure(fig, out_png, out_pdf)
    return fig
