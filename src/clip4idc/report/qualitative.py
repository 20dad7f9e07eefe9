"""The qualitative figure: before and after images of a few pairs, their references and every variant's caption.

Pairs are picked by position in the test manifest only (`qualitative_examples`), never by outcome, so
the figure cannot be cherry-picked. It shares the style and colours of the other figures (`plots.py`).
"""
from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from matplotlib import rc_context
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from PIL import Image, UnidentifiedImageError

from . import VARIANT_LABELS
from .plots import BASELINE_COLOR, VARIANT_COLORS, figure_style, save_figure

_QUAL_LABELS = {**VARIANT_LABELS, "constant": "Constant caption"}
_QUAL_COLORS = {**VARIANT_COLORS, "constant": BASELINE_COLOR}


def qualitative_examples(manifest: Sequence[Mapping], predictions: Mapping[str, Mapping[str, str]], *,
                         limit: int = 6) -> list[dict]:
    """Pairs for the qualitative figure, picked by position in `manifest` only, never by outcome.

    `manifest`: one split's entries (manifest/<split>.jsonl). With change types: the first pair of each
    change type (in order of first appearance), then the first no-change pair; without: the first
    `limit` pairs. `predictions`: {variant: {pair_id: caption}}, read only for the chosen pairs.
    → [{"pair_id", "change_type", "changed", "before", "after", "references", "captions": {variant: caption}}]
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    unknown = [v for v in predictions if v not in _QUAL_LABELS]
    if unknown:
        raise ValueError(f"predictions: unknown variant names {unknown}; expected some of {list(_QUAL_LABELS)}")
    entries = list(manifest)
    for i, entry in enumerate(entries):
        missing = [k for k in ("pair_id", "before", "after", "references", "changed", "change_type") if k not in entry]
        if missing:
            raise ValueError(f"manifest[{i}]: missing keys {missing}")
    if any(e["change_type"] is not None for e in entries):
        chosen, seen = [], set()
        for entry in entries:
            if entry["change_type"] is not None and entry["change_type"] not in seen:
                seen.add(entry["change_type"])
                chosen.append(entry)
        chosen += [e for e in entries if not e["changed"]][:1]
        chosen = chosen[:limit]
    else:
        chosen = entries[:limit]
    order = [v for v in _QUAL_LABELS if v in predictions]
    examples = []
    for entry in chosen:
        captions = {}
        for variant in order:
            if entry["pair_id"] not in predictions[variant]:
                raise KeyError(f"predictions[{variant!r}] has no caption for pair {entry['pair_id']!r}")
            captions[variant] = predictions[variant][entry["pair_id"]]
        examples.append({"pair_id": entry["pair_id"], "change_type": entry["change_type"],
                         "changed": entry["changed"], "before": entry["before"], "after": entry["after"],
                         "references": list(entry["references"]), "captions": captions})
    return examples


# Qualitative layout, in inches / points: computed, not left to a layout engine, so every row is
# exactly as tall as its text or its images need and nothing can spill into the next row.
_Q_WIDTH, _Q_MARGIN, _Q_IMG_W, _Q_IMG_GAP, _Q_TEXT_GAP = 10.0, 0.15, 2.1, 0.08, 0.2
_Q_TOP, _Q_BOTTOM, _Q_ROW_GAP = 0.75, 0.12, 0.3
_Q_FONT = 8.0
_Q_LINE = _Q_FONT * 1.4  # points per text line: more than a line's ink height, so lines never touch
_Q_INDENT = 10.0         # points: captions and references sit under their label
_Q_MAX_REFS = 3
# Wrap widths from a conservative character width (DejaVu Sans averages about 0.55 em on prose).
_Q_CHAR = 0.6 * _Q_FONT


def _load_image(root: Path, relative: str, which: str, pair_id: str) -> np.ndarray:
    path = root / relative
    if not path.is_file():
        raise FileNotFoundError(f"qualitative_plot: the {which} image of pair {pair_id!r} is missing: {path}")
    try:
        with Image.open(path) as im:
            rgb = im.convert("RGB")
    except (OSError, UnidentifiedImageError) as err:
        raise ValueError(f"qualitative_plot: cannot read the {which} image of pair {pair_id!r} ({path}): "
                         f"{err}") from err
    rgb.thumbnail((512, 512))  # enough for ~2 inches at 150 dpi; keeps the PDF small
    return np.asarray(rgb)


def _text_color(color: str) -> tuple[float, float, float]:
    """The variant colour darkened for text: light Okabe-Ito hues are too pale to read as letters."""
    return tuple(0.62 * c for c in to_rgb(color))


def pair_kind(pair: Mapping) -> str:
    """What a pair is, as the figures name it: its change type, else "change" or "no change"."""
    return pair["change_type"] or ("change" if pair["changed"] else "no change")


def _row_lines(example: Mapping, width_pt: float) -> list[dict]:
    """The text block beside a pair's images, one dict per printed line (text, indent, style)."""
    wrap = int((width_pt - _Q_INDENT) / _Q_CHAR)
    kind = pair_kind(example)
    refs = example["references"]
    lines = [{"text": f"{kind} · pair {example['pair_id']}", "weight": "bold", "color": "black", "indent": 0.0}]
    # The failure gallery says why a pair was picked (its score and outcome); the qualitative figure has no note.
    lines += [{"text": part, "color": "black", "indent": 0.0} for part in textwrap.wrap(example.get("note") or "", wrap)]
    lines.append({"text": "references:" if len(refs) <= _Q_MAX_REFS else f"references ({_Q_MAX_REFS} of {len(refs)}):",
                  "color": "#444444", "indent": 0.0, "style": "italic"})
    for ref in refs[:_Q_MAX_REFS]:
        for j, part in enumerate(textwrap.wrap(ref, wrap - 2) or [""]):
            lines.append({"text": ("• " if j == 0 else "  ") + part, "color": "#444444", "indent": _Q_INDENT})
    for variant, caption in example["captions"].items():
        lines.append({"text": _QUAL_LABELS[variant] + ":", "weight": "bold", "indent": 0.0, "gap": 0.35,
                      "color": _text_color(_QUAL_COLORS[variant]), "marker": _QUAL_COLORS[variant]})
        for part in textwrap.wrap(caption, wrap) or ["(empty caption)"]:
            lines.append({"text": part, "color": "black", "indent": _Q_INDENT})
    return lines


def qualitative_plot(examples: Sequence[Mapping], image_root: str | os.PathLike, out_png: str | os.PathLike,
                     out_pdf: str | os.PathLike, *, title: str | None = None) -> Figure:
    """One row per pair (`qualitative_examples`): before and after image (true aspect ratio), beside them
    the references and each variant's caption, labelled in the variant's colour. Image paths are
    relative to `image_root`, the dataset's folder."""
    if not examples:
        raise ValueError("qualitative_plot: no examples to draw")
    root = Path(image_root)
    text_w = _Q_WIDTH - 2 * _Q_MARGIN - 2 * _Q_IMG_W - _Q_IMG_GAP - _Q_TEXT_GAP
    rows = []
    for ex in examples:
        before = _load_image(root, ex["before"], "before", ex["pair_id"])
        after = _load_image(root, ex["after"], "after", ex["pair_id"])
        lines = _row_lines(ex, text_w * 72)
        text_h = (len(lines) + sum(line.get("gap", 0) for line in lines)) * _Q_LINE / 72
        # Portrait images are capped in height; imshow then narrows them, keeping their aspect.
        img_h = max(min(_Q_IMG_W * im.shape[0] / im.shape[1], 1.3 * _Q_IMG_W) for im in (before, after))
        rows.append((before, after, lines, max(text_h, img_h)))
    height = _Q_TOP + _Q_BOTTOM + sum(r[3] for r in rows) + _Q_ROW_GAP * (len(rows) - 1)

    with rc_context(figure_style()):
        fig = Figure(figsize=(_Q_WIDTH, height))
        y = _Q_TOP  # inches from the top of the figure to the top of the current row
        for r, (before, after, lines, row_h) in enumerate(rows):
            bottom = (height - y - row_h) / height
            x = _Q_MARGIN
            for image, header in ((before, "before"), (after, "after")):
                ax = fig.add_axes((x / _Q_WIDTH, bottom, _Q_IMG_W / _Q_WIDTH, row_h / height))
                ax.imshow(image, interpolation="antialiased")
                ax.set_anchor("N")  # images top-aligned with the text block
                ax.set_xticks([])
                ax.set_yticks([])
                ax.grid(False)
                for spine in ax.spines.values():  # a thin full frame (the style hides top and right)
                    spine.set(visible=True, color="#999999", linewidth=0.6)
                if r == 0:
                    ax.set_title(header, fontsize=10, fontweight="bold", pad=4)
                x += _Q_IMG_W + _Q_IMG_GAP
            x += _Q_TEXT_GAP - _Q_IMG_GAP
            ax_text = fig.add_axes((x / _Q_WIDTH, bottom, text_w / _Q_WIDTH, row_h / height))
            ax_text.set_axis_off()
            offset = 0.0
            for line in lines:
                offset += line.get("gap", 0) * _Q_LINE
                dx = line["indent"]
                if "marker" in line:
                    # A swatch in the variant's true colour, as in the other figures' legends.
                    ax_text.annotate("■", (0, 1), xycoords="axes fraction", xytext=(0, -offset),
                                     textcoords="offset points", va="top", ha="left", fontsize=_Q_FONT,
                                     color=line["marker"])
                    dx = _Q_INDENT
                ax_text.annotate(line["text"], (0, 1), xycoords="axes fraction", xytext=(dx, -offset),
                                 textcoords="offset points", va="top", ha="left", fontsize=_Q_FONT,
                                 color=line["color"], fontweight=line.get("weight", "normal"),
                                 fontstyle=line.get("style", "normal"), annotation_clip=False)
                offset += _Q_LINE
            y += row_h
            if r + 1 < len(rows):
                sep = 1 - (y + _Q_ROW_GAP / 2) / height
                fig.add_artist(Line2D([_Q_MARGIN / _Q_WIDTH, 1 - _Q_MARGIN / _Q_WIDTH], [sep, sep],
                                      color="#cccccc", linewidth=0.8))
                y += _Q_ROW_GAP
        fig.suptitle(title or "Captions of example pairs", y=1 - 0.12 / height, va="top")
        save_figure(fig, out_png, out_pdf)
    return fig
