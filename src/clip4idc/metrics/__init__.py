"""Metrics of the two CLIP4IDC stages (PAPER.md section 5).

- `caption`: BLEU-1..4, METEOR, ROUGE-L, CIDEr(-D) through pycocoevalcap, as the authors report.
- `retrieval`: R@K, median and mean rank for the adaptation stage (CLIP4Clip's multi-sentence
  protocol).

Nothing is imported here so that `import clip4idc.metrics.retrieval` does not need Java or
pycocoevalcap; import the submodule you need.
"""
