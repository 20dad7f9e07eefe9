"""Published CLIP4IDC numbers (PAPER.md section 6): the only numbers the report does not compute.

Scale ×100, exactly as published (so 150.75 is a CIDEr of 1.5075 in pycocoevalcap's units).
Metric keys are those of `clip4idc.metrics.caption.METRIC_KEYS` and
`clip4idc.metrics.retrieval.RANK_KEYS`; a metric a source does not give is simply absent.
Every entry carries its `source`, printed beside it in the report.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

_PAPER = "Guo, Wang, Laaksonen, CLIP4IDC, AACL-IJCNLP 2022 (arXiv 2206.00629)"
_README = "authors' README, github.com/sushizixin/CLIP4IDC"
_AUTHORS = "CLIP4IDC authors (github.com/sushizixin/CLIP4IDC)"
# Every number below is restated from the project's design notes, which cite the above.
_RESTATED = "restated in design/PAPER.md section 6"


@dataclass(frozen=True)
class PublishedCaptioning:
    dataset: str
    setting: str                  # what exactly was scored, e.g. "test, Total"
    metrics: Mapping[str, float]  # ×100
    source: str


@dataclass(frozen=True)
class PublishedSpread:
    """Spread of a metric over seeds; `None` where the source does not give the statistic."""
    dataset: str
    metric: str
    n_seeds: int
    mean: float
    sd: float | None
    min: float | None
    max: float | None
    source: str


@dataclass(frozen=True)
class PublishedRetrieval:
    dataset: str
    setting: str
    t2p: Mapping[str, float]      # T-IP, percent
    p2t: Mapping[str, float]      # IP-T, percent
    source: str


def _frozen(d: dict) -> Mapping[str, float]:
    return MappingProxyType(dict(d))


CAPTIONING: Mapping[str, PublishedCaptioning] = MappingProxyType({
    "clevr_change": PublishedCaptioning(
        dataset="CLEVR-Change", setting="test, Total: change and distractor pairs",
        metrics=_frozen({"BLEU-1": 86.48, "BLEU-2": 77.97, "BLEU-3": 67.58, "BLEU-4": 56.87,
                         "METEOR": 38.40, "ROUGE-L": 76.43, "CIDEr": 150.75}),
        source=f"{_README}: 1xV100, seed 2021, best epoch 19 (2xV100 gives CIDEr 150.39); "
               f"{_RESTATED}"),
    "spot_the_diff": PublishedCaptioning(
        dataset="Spot-the-Diff", setting="test",
        metrics=_frozen({"BLEU-1": 41.45, "BLEU-2": 27.60, "BLEU-3": 17.82, "BLEU-4": 11.60,
                         "METEOR": 14.19, "ROUGE-L": 35.02, "CIDEr": 47.35}),
        source=f"{_README}: unseeded, several runs reported comparable; {_RESTATED}"),
    "ier": PublishedCaptioning(
        dataset="Image-Editing-Request", setting="test",
        metrics=_frozen({"BLEU-4": 8.2, "METEOR": 14.6, "ROUGE-L": 40.4, "CIDEr": 32.2}),
        source=f"{_PAPER}, as cited by later papers; {_RESTATED}"),
})

# A reproduction is judged against this spread, not against the single best run above.
SEED_SPREAD: Mapping[str, Mapping[str, PublishedSpread]] = MappingProxyType({
    "clevr_change": MappingProxyType({
        "CIDEr": PublishedSpread(dataset="CLEVR-Change", metric="CIDEr", n_seeds=8, mean=141.95,
                                 sd=6.7, min=131.2, max=149.2,
                                 source=f"{_AUTHORS}: 8 seeds, 2xV100, test, Total; {_RESTATED}"),
        "BLEU-4": PublishedSpread(dataset="CLEVR-Change", metric="BLEU-4", n_seeds=8, mean=54.55,
                                  sd=None, min=None, max=None,
                                  source=f"{_AUTHORS}: 8 seeds, 2xV100, test, Total; {_RESTATED}"),
    }),
})

RETRIEVAL: Mapping[str, PublishedRetrieval] = MappingProxyType({
    "clevr_change": PublishedRetrieval(
        dataset="CLEVR-Change", setting="test, adaptation stage",
        t2p=_frozen({"R@1": 26.8, "R@5": 58.7, "R@10": 70.0}),
        p2t=_frozen({"R@1": 46.4, "R@5": 83.0, "R@10": 86.6}),
        source=f"{_PAPER}; {_RESTATED}"),
})


def published_captioning(dataset: str) -> PublishedCaptioning:
    if dataset not in CAPTIONING:
        raise KeyError(f"no published captioning numbers for dataset {dataset!r}; "
                       f"known: {sorted(CAPTIONING)}")
    return CAPTIONING[dataset]
