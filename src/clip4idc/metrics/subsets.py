"""The pair sets a split is scored on besides the whole (PAPER.md section 5).

CLEVR-Change is reported in the *Total* setting (change and distractor pairs together); the
established breakdown (DUDA's protocol) also scores the change pairs alone, the no-change
(distractor) pairs alone, and the change pairs of each change type. Each set is scored as a corpus
of its own (CIDEr's document frequencies come from that set's references), as in that protocol.
Datasets without distractors or change types (Spot-the-Diff, IER) have only the total.
"""
from __future__ import annotations

from ..analysis.no_change import says_no_change as _says_no_change
from ..data.records import CHANGE_TYPES

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


def change_detection(predictions: dict[str, str], subsets: dict[str, list[str]]) -> dict | None:
    """Whether captions tell changed pairs from distractors, where the split has both (else None).

    A caption *says no change* when the no-change detector (analysis/no_change.says_no_change: phrase patterns,
    tested on CLEVR-Change's and the embedded data's own no-change sentences) says so; any other caption *names a
    change*. → the share of change pairs whose caption names a change (`change_named`) and of no-change pairs whose
    caption says no change (`no_change_said`), with the counts behind them. A model that answers every pair with
    one sentence scores 1 on one and 0 on the other. The error analysis (`clip4idc analyze`) counts its missed and
    hallucinated changes with the same detector, so its counts are these.
    """
    if "change" not in subsets or "no-change" not in subsets:
        return None
    says_no_change = {i: _says_no_change(predictions[i]) for i in subsets[TOTAL]}
    named = sum(not says_no_change[i] for i in subsets["change"])
    said = sum(says_no_change[i] for i in subsets["no-change"])
    n_change, n_no_change = len(subsets["change"]), len(subsets["no-change"])
    return {"change_named": named / n_change, "no_change_said": said / n_no_change,
            "n_change_named": named, "n_change": n_change, "n_no_change_said": said, "n_no_change": n_no_change}
