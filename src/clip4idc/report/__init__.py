"""Tables and figures from metric files; the vocabulary they share lives here.

- `published`: the published numbers (PAPER.md section 6), with sources.
- `tables`: metric-file loading and validation, results/tables.tex (booktabs LaTeX).
- `plots`: the ablation bar chart (PNG and PDF).
"""
from __future__ import annotations

# The paper's three systems, in the paper's order (PAPER.md section 1), as printed in tables
# and figure legends. Keys are the variant names used in params.yaml and metric files.
VARIANT_LABELS = {
    "clip-ft": "CLIP-FT",
    "no-adapt": "CLIP4IDC w/o adaptation",
    "adapt": "CLIP4IDC (with adaptation)",
}
BASELINE_LABEL = "Constant caption (most frequent train caption)"

# Short column headers for the caption metrics of clip4idc.metrics.caption.METRIC_KEYS.
METRIC_LABELS = {
    "BLEU-1": "B-1", "BLEU-2": "B-2", "BLEU-3": "B-3", "BLEU-4": "B-4",
    "METEOR": "METEOR", "ROUGE-L": "ROUGE-L", "CIDEr": "CIDEr",
}
