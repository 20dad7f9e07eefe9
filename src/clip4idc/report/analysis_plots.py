"""Figures of the error analysis: how the change type a caption names compares with the true one.

- `confusion_plot`: per variant, the confusion matrix of the true change type (rows) against the
  change type parsed from the caption (columns), summed over seeds, coloured by the row's share.

Drawn like the other report figures (`plots.py`): bare `Figure`, `figure_style()`, `save_figure()`.
"""
from __future__ import annotations

import os
from numbers import Integral
from typing import Mapping, Sequence

import numpy as np
from matplotlib import colormaps, rc_context
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from . import VARIANT_LABELS
from .plots import figure_style, save_figure

# Sequential and single-hue: lightness alone carries the value, so it reads the same with any colour
# vision and in greyscale, and near-zero cells stay almost white, leaving the errors that matter visible.
CONFUSION_CMAP = "Blues"
SHARE_LABEL = "share of the row's pairs"
DEFAULT_TITLE = "Change type: true vs caption"
_PANEL_W = 3.0      # inches per panel (about 10 inches for the paper's three variants)
_EXTRA_W = 1.0      # inches for the y tick labels and the shared colorbar
_COUNT_FONT = 8.0   # points, the largest size of the numbers in the cells
_ZERO_COLOR = "#a8a8a8"
_EMPTY_COLOR = "#777777"


def _labels(value, key: str, source: str) -> list[str]:
    if (not isinstance(value, (list, tuple)) or not value or not all(isinstance(s, str) for s in value)
            or len(set(value)) != len(value)):
        raise ValueError(f"{source}: {key!r} must be a non-empty list of distinct strings, got {value!r}")
    return list(value)


def _counts(value, shape: tuple[int, int], source: str) -> np.ndarray:
    rows, cols = shape
    if not isinstance(value, (list, tuple)) or len(value) != rows:
        raise ValueError(f"{source}: 'counts' must be a list of {rows} rows (one per 'true' label), got {value!r}")
    for i, row in enumerate(value):
        if not isinstance(row, (list, tuple)) or len(row) != cols:
            raise ValueError(f"{source}: counts[{i}] must be a list of {cols} counts (one per 'predicted' label), "
                             f"got {row!r}")
        for j, n in enumerate(row):
            # bool is an Integral, but True as a pair count means a broken writer, not one pair.
            if isinstance(n, bool) or not isinstance(n, Integral) or n < 0:
                raise ValueError(f"{source}: counts[{i}][{j}] must be a non-negative integer, got {n!r}")
    return np.array(value, dtype=np.int64).reshape(rows, cols)


def _summed(confusions: Mapping[str, Sequence[Mapping]]
            ) -> tuple[list[str], list[str], dict[str, tuple[np.ndarray, int]]]:
    """Validate; → (true labels, predicted labels, {variant: (counts summed over seeds, number of seeds)})
    in VARIANT_LABELS order."""
    if not isinstance(confusions, Mapping) or not confusions:
        raise ValueError(f"confusions: expected {{variant: [confusion per seed]}} for some of {list(VARIANT_LABELS)}, "
                         f"got {confusions!r}")
    unknown = [v for v in confusions if v not in VARIANT_LABELS]
    if unknown:
        raise ValueError(f"confusions: unknown variant names {unknown}; expected some of {list(VARIANT_LABELS)}")
    reference: tuple[str, list[str], list[str]] | None = None
    summed = {}
    for variant in (v for v in VARIANT_LABELS if v in confusions):
        seeds = confusions[variant]
        if not isinstance(seeds, (list, tuple)) or not seeds:
            raise ValueError(f"confusions[{variant!r}]: expected a non-empty list of confusions, one per seed, "
                             f"got {seeds!r}")
        total = None
        for i, conf in enumerate(seeds):
            source = f"confusions[{variant!r}][{i}] (seed index {i})"
            if not isinstance(conf, Mapping) or not {"true", "predicted", "counts"} <= set(conf):
                raise ValueError(f"{source}: expected an object with keys 'true', 'predicted' and 'counts'")
            true = _labels(conf["true"], "true", source)
            predicted = _labels(conf["predicted"], "predicted", source)
            if reference is None:
                reference = (source, true, predicted)
            elif (true, predicted) != tuple(reference[1:]):
                raise ValueError(f"{source}: labels true={true} predicted={predicted} differ from those of "
                                 f"{reference[0]}: true={reference[1]} predicted={reference[2]}; "
                                 f"expected the same labels in every confusion")
            counts = _counts(conf["counts"], (len(true), len(predicted)), source)
            total = counts if total is None else total + counts
        summed[variant] = (total, len(seeds))
    return reference[1], reference[2], summed


def _shares(counts: np.ndarray) -> np.ma.MaskedArray:
    """Row-normalised counts; rows without pairs masked (drawn blank), never divided by zero."""
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
    return np.ma.masked_array(shares, mask=np.broadcast_to(totals == 0, counts.shape))


def _ink(rgba) -> str:
    """Black or white, whichever reads on a cell of colour `rgba` (by its luminance)."""
    r, g, b = rgba[:3]
    return "white" if 0.2126 * r + 0.7152 * g + 0.0722 * b < 0.5 else "black"


def _apart(true: Sequence[str], predicted: Sequence[str]) -> list[float]:
    """x positions of the lines that set caption-only columns ("unparsed") apart from the change types."""
    inside = [p in true for p in predicted]
    return [j - 0.5 for j in range(1, len(predicted)) if inside[j] != inside[j - 1]]


def confusion_plot(confusions: Mapping[str, Sequence[Mapping]], out_png: str | os.PathLike,
                   out_pdf: str | os.PathLike, *, title: str | None = None) -> Figure:
    """One panel per variant (VARIANT_LABELS order): true change type (rows) against the caption's
    (columns), counts summed over seeds printed in the cells, colour = share of the row's pairs.

    `confusions`: {variant: [{"true": [row labels], "predicted": [column labels], "counts": [[int]]}, one per
    seed]}, all with the same labels. Cells whose labels match (the correct ones) are outlined; columns
    that are no change type ("unparsed") sit behind a separating line; rows without pairs stay blank.
    """
    true, predicted, summed = _summed(confusions)
    n_rows, n_cols = len(true), len(predicted)
    n = len(summed)
    cell = _PANEL_W / n_cols * 0.88  # inches; the rest of a panel's width goes to the gaps between panels
    width = _EXTRA_W + _PANEL_W * n
    height = 1.55 + cell * n_rows  # titles, rotated tick labels and axis label above and below the cells
    # Numbers must fit their cell: about 0.7 em per bold digit, with a margin.
    digits = max(len(str(int(c.max()))) for c, _ in summed.values())
    font = min(_COUNT_FONT, 0.8 * cell * 72 / (0.7 * digits))
    cmap = colormaps[CONFUSION_CMAP].with_extremes(bad="white")
    norm = Normalize(0.0, 1.0)  # fixed, so equal colours mean equal shares across panels

    with rc_context(figure_style()):
        fig = Figure(figsize=(width, height), layout="constrained")
        axes = fig.subplots(1, n, squeeze=False)[0]
        for k, (ax, (variant, (counts, n_seeds))) in enumerate(zip(axes, summed.items())):
            shares = _shares(counts)
            image = ax.imshow(shares, cmap=cmap, norm=norm, aspect="equal", interpolation="nearest")
            for i in range(n_rows):
                if not counts[i].any():
                    # The whole row is free, so the note needs no shrinking to the numbers' size.
                    ax.text((n_cols - 1) / 2, i, "no pairs", ha="center", va="center", fontsize=_COUNT_FONT,
                            fontstyle="italic", color=_EMPTY_COLOR, gid="empty-row")
                    continue
                for j in range(n_cols):
                    value = int(counts[i, j])
                    color = _ink(cmap(norm(shares[i, j]))) if value else _ZERO_COLOR
                    # Bold where the caption is right: the outline alone vanishes on the darkest cells.
                    weight = "bold" if predicted[j] == true[i] else "normal"
                    ax.text(j, i, str(value), ha="center", va="center", fontsize=font, color=color,
                            fontweight=weight, gid="count")
            for i, label in enumerate(true):
                if label in predicted and counts[i].any():  # an empty row has nothing right or wrong
                    j = predicted.index(label)
                    # Inset a little, so neighbouring correct cells keep separate frames.
                    ax.add_patch(Rectangle((j - 0.45, i - 0.45), 0.9, 0.9, fill=False, edgecolor="black",
                                           linewidth=1.3, gid="diagonal"))
            for x in _apart(true, predicted):
                ax.axvline(x, color="#333333", linewidth=1.6, gid="apart")
            ax.grid(False)
            for spine in ax.spines.values():  # a full frame: near-white cells would otherwise melt into the page
                spine.set(visible=True, color="#999999", linewidth=0.6)
            # Upright: labels longer than a cell ("material") would overlap; at 45 degrees their boxes still do.
            ax.set_xticks(range(n_cols), predicted, rotation=90)
            for tick, label in zip(ax.get_xticklabels(), predicted):
                if label not in true:
                    tick.set_fontstyle("italic")
            ax.set_yticks(range(n_rows), true)
            ax.tick_params(length=0)
            ax.tick_params(axis="y", labelleft=k == 0)
            ax.set_xlabel("caption's change type")
            if k == 0:
                ax.set_ylabel("true change type")
            ax.set_title(VARIANT_LABELS[variant] + (f"\n({n_seeds} seeds)" if n_seeds > 1 else ""))
        bar = fig.colorbar(image, ax=list(axes), shrink=0.8, fraction=0.04 if n > 1 else 0.08, pad=0.02)
        bar.set_label(SHARE_LABEL)
        bar.outline.set_linewidth(0.6)
        fig.suptitle(DEFAULT_TITLE if title is None else title)
        save_figure(fig, out_png, out_pdf)
    return fig
