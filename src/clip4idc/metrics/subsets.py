"""The pair sets a split is scored on besides the whole (PAPER.md section 5).

CLEVR-Change is reported in the *Total* setting (change and distractor pairs together); the
established breakdown (DUDA's protocol) also scores the change pairs alone, the no-change
(distractor) pairs alone, and the change pairs of each change type. Each set is scored as a corpus
of its own (CIDEr's document frequencies come from that set's references), as in that protocol.
Datasets without distractors or change types (Spot-the-Diff, IER) have only the total.
"""
from __future__ import annotations

from ..data.records import CHANGE_TYPES
from .caption import normalize_caption

TOTAL = "total"


def evaluation_subsets(manifest: list[dict]) -> dict[str, list[str]]:
    """{set name: pair ids, in manifest order} from a prepared split's manifest.

    Always `total`; `change` and `no-change` when the split has both kinds of pair; one set per
    change type that occurs (named as in CLEVR-Change's type_mapping.json).
    """
    ids = [m["pair_id"] for m in manifest]
    if len(set(ids)) != len(ids):
        raise ValueError("the manifest lists a pair id twice")
    subsets = {TOTAL: ids}
    changed = [m["pair_id"] for m in manifest if m["changed"]]
    unchanged = [m["pair_id"] for m in manifest if not m["changed"]]
    if changed and unchanged:
        subsets["change"], subsets["no-change"] = changed, unchanged
    for change_type in CHANGE_TYPES:
        typed = [m["pair_id"] for m in manifest if m["change_type"] == change_type]
        if typed:
            subsets[change_type] = typed
    return subsets


def _sentence(text: str) -> str:
    return normalize_caption(text.replace(".", " "))


def change_detection(predictions: dict[str, str], references: dict[str, list[str]],
                     subsets: dict[str, list[str]]) -> dict | None:
    """Whether captions tell changed pairs from distractors, where the split has both (else None).

    A caption *says no change* when it is one of the sentences the split's no-change pairs are
    described with (compared lower-cased, periods and extra spaces dropped); any other caption *names a
    change*. → the share of change pairs whose caption names a change (`change_named`) and of no-change
    pairs whose caption says no change (`no_change_said`), with the counts behind them. A model that
    answers every pair with one sentence scores 1 on one and 0 on the other.
    """
    if "change" not in subsets or "no-change" not in subsets:
        return None
    no_change = {_sentence(s) for i in subsets["no-change"] for s in references[i]}
    says_no_change = {i: _sentence(predictions[i]) in no_change for i in subsets[TOTAL]}
    named = sum(not says_no_change[i] for i in subsets["change"])
    said = sum(says_no_change[i] for i in subsets["no-change"])
    n_change, n_no_change = len(subsets["change"]), len(subsets["no-change"])
    return {"change_named": named / n_change, "no_change_said": said / n_no_change,
            "n_change_named": named, "n_change": n_change, "n_no_change_said": said, "n_no_change": n_no_change,
            "no_change_sentences": len(no_change)}
