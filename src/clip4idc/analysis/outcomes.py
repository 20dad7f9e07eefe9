"""The outcomes the error analysis gives a caption, and the shares the report prints of them (analysis/pairs.py
writes them). Kept apart from the grammar so that the report, which only reads the analysis files, does not
depend on how captions are parsed."""
from __future__ import annotations

from typing import Mapping

ATTRIBUTES = ("size", "color", "material", "shape")   # of the object a CLEVR caption names
WRONG_ATTRIBUTES = (*ATTRIBUTES, "new")                # ... and the new colour / material of a color / material change
# The failures the report tabulates, each a share of the pairs it can happen to (`FAILURE_OF`).
FAILURES = ("missed", "hallucinated", "wrong_type", "wrong_object", "unparsed")
SHARES = ("right", *FAILURES)   # with the change pairs judged right
FAILURE_OF = {"right": "n_change", "missed": "n_change", "hallucinated": "n_no_change", "wrong_type": "n_change",
              "wrong_object": "n_change", "unparsed": "n_change"}


def failure_rates(counts: Mapping[str, int]) -> dict[str, float | None]:
    """The share of the pairs each outcome of SHARES can happen to (`FAILURE_OF`): None where there are no such
    pairs, or where the run's data cannot show it (hallucination without distractors; a right caption, a wrong
    type or object and an unparsed caption without the grammar)."""
    grammar = "wrong_type" in counts
    rates = {}
    for outcome in SHARES:
        n = counts.get(FAILURE_OF[outcome], 0)
        judged = outcome in counts and (grammar or outcome != "right")
        rates[outcome] = counts[outcome] / n if judged and n else None
    return rates
