"""Figures of the report: the ablation bar chart (PNG for reading, PDF for papers).

Figures are drawn on a bare `matplotlib.figure.Figure`, never through pyplot, so no backend is
selected globally and nothing opens a window: saving to PNG/PDF picks the Agg/PDF renderers.
All figures share `_style()` and the variant colours below.
"""
from __future__ import annotations

import os
from typing import Mapping, Sequence

from matplotlib import rc_context
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ..io import atomic_path
from ..metrics.caption import METRIC_KEYS
from . import BASELINE_LABEL, METRIC_LABELS, VARIANT_LABELS
from .tables import as_runs, check_variants, summarise_runs

# Okabe-Ito colours: distinguishable with colour-blindness and in greyscale print.
VARIANT_COLORS = {"clip-ft": "#E69F00", "no-adapt": "#56B4E9", "adapt": "#009E73"}
BASELINE_COLOR = "#555555"
# CIDEr (up to 10, ×100 -> hundreds) would flatten the other metrics, so it gets its own panel.
_LARGE_SCALE = ("CIDEr",)
PNG_DPI = 150


def _style() -> dict:
    """rcParams shared by every figure of the report."""
    return {
        "font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8,
        "xtick.labelsize": 8, "ytick.labelsize": 8, "figure.titlesize": 11,
        "axes.spines.top": False, "axes.spines.right": False,
        "axes.grid": True, "axes.grid.axis": "y", "grid.alpha": 0.3, "axes.axisbelow": True,
        "pdf.fonttype": 42,  # embed TrueType so PDF text stays text
        "svg.fonttype": "none",
    }


def _save(fig: Figure, out_png: str | os.PathLike, out_pdf: str | os.PathLike) -> None:
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=PNG_DPI)
    with atomic_path(out_pdf) as tmp:
        # No creation date: the same inputs give the same bytes.
        fig.savefig(tmp, format="pdf", metadata={"CreationDate": None})


def _bar_panel(ax, keys: Sequence[str], summaries: Mapping[str, dict], baseline: dict | None) -> None:
    """One group of bars per metric in `keys`, one bar per variant; values ×100."""
    n = len(summaries)
    width = 0.8 / n
    for i, (variant, s) in enumerate(summaries.items()):
        xs = [k + (i - (n - 1) / 2) * width for k in range(len(keys))]
        heights = [100 * s["mean"][key] for key in keys]
        # Error bars only where there is a spread to show (several seeds).
        errs = [100 * s["sd"][key] for key in keys] if s["n"] > 1 else None
        bars = ax.bar(xs, heights, width * 0.92, yerr=errs, capsize=2 if errs else 0,
                      color=VARIANT_COLORS[variant], label=VARIANT_LABELS[variant],
                      error_kw={"elinewidth": 0.8, "ecolor": "#333333"})
        ax.bar_label(bars, labels=[f"{h:.1f}" for h in heights], padding=3, fontsize=7, rotation=90)
    if baseline is not None:
        for k, key in enumerate(keys):
            ax.hlines(100 * baseline["mean"][key], k - 0.45, k + 0.45, colors=BASELINE_COLOR,
                      linestyles="--", linewidth=1.2, zorder=3)
    ax.set_xticks(range(len(keys)), [METRIC_LABELS[key] for key in keys])
    ax.set_xlim(-0.6, len(keys) - 0.4)
    top = max([100 * (s["mean"][key] + (s["sd"][key] or 0)) for s in summaries.values() for key in keys]
              + ([100 * baseline["mean"][key] for key in keys] if baseline else []))
    ax.set_ylim(0, max(top, 1e-6) * 1.22)  # head-room for the rotated value labels


def ablation_plot(variants: Mapping[str, dict | list[dict]], baseline: dict | list[dict] | None,
                  out_png: str | os.PathLike, out_pdf: str | os.PathLike, *,
                  title: str | None = None) -> None:
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

    small = [k for k in METRIC_KEYS if k not in _LARGE_SCALE]
    large = [k for k in METRIC_KEYS if k in _LARGE_SCALE]
    with rc_context(_style()):
        fig = Figure(figsize=(9.0, 4.0), layout="constrained")
        ax_small, ax_large = fig.subplots(1, 2, width_ratios=[len(small), len(large) + 0.6])
        _bar_panel(ax_small, small, summaries, base)
        _bar_panel(ax_large, large, summaries, base)
        ax_small.set_ylabel("score (×100)")
        ax_large.set_ylabel("score (×100)")
        handles, labels = ax_small.get_legend_handles_labels()
        if base is not None:
            handles.append(Line2D([], [], color=BASELINE_COLOR, linestyle="--", linewidth=1.2))
            labels.append(BASELINE_LABEL)
        fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 4),
                   frameon=False)
        fig.suptitle(title)
        _save(fig, out_png, out_pdf)
