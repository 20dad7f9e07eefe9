"""The pair sets a split is scored on besides the whole (PAPER.md section 5).

CLEVR-Change is reported in the *Total* setting (change and distractor pairs together); the
established breakdown (DUDA's protocol) also scores the change pairs alone, the no-change
(distractor) pairs alone, and the change pairs of each change type. Each set is scored as a corpus
of its own (CIDEr's document frequencies come from that set's references), as in that protocol.
Datasets without distractors or change types (Spot-the-Diff, IER) have only the total.
"""
from __future__ import annotations

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
