"""Tables and figures from metric files; the vocabulary they share lives here.

- `published`: the published numbers (PAPER.md section 6), with sources.
- `tables`: metric-file loading and validation, results/tables.tex (booktabs LaTeX).
- `stats`: the paired t-test between variants over seeds.
- `plots`: the chart figures, PNG and PDF: ablation bars, training curves, retrieval R@K, per-set bars.
- `qualitative`: the figure of before/after pairs with their references and every variant's caption.
- `analysis_plots`: the error analysis's figure, per variant the confusion of the true change type
  against the one each caption names.
- `build`: what `clip4idc report` runs: reads a run's files and writes all of the above
  (results/tables.pdf: stages/tables_pdf.py).
"""
from __future__ import annotations

import math

# The paper's three systems, in the paper's order (PAPER.md section 1), as printed in tables
# and figure legends. Keys are the variant names used in params.yaml and metric files.
VARIANT_LABELS = {
    "clip-ft": "CLIP-FT",
    "no-adapt": "CLIP4IDC w/o adaptation",
    "adapt": "CLIP4IDC (with adaptation)",
}
# Where two variant names share a cell (the paired-test rows).
SHORT_LABELS = {"clip-ft": "CLIP-FT", "no-adapt": "w/o adaptation", "adapt": "CLIP4IDC"}
BASELINE_LABEL = "Constant caption (most frequent train caption)"

# Short column headers for the caption metrics of clip4idc.metrics.caption.METRIC_KEYS.
METRIC_LABELS = {
    "BLEU-1": "B-1", "BLEU-2": "B-2", "BLEU-3": "B-3", "BLEU-4": "B-4",
    "METEOR": "METEOR", "ROUGE-L": "ROUGE-L", "CIDEr": "CIDEr",
}


def is_finite_number(value) -> bool:
    """A metric value the report can print: an int or float (bool excluded), neither NaN nor infinite."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
