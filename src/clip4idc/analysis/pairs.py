"""What each caption gets right and wrong, pair by pair, and the counts the report prints.

From one split's manifest (which pairs changed, and how), its references and one captioner's captions:

- every pair gets its caption's sentence-level scores (`CaptionScorer.per_pair`) and whether the caption
  *says no change* (`no_change.says_no_change`);
- every pair gets one **outcome**. A distractor (no-change) pair is `right` when its caption says no change,
  else `hallucinated`. A change pair whose caption says no change is `missed`. On CLEVR-style data (the
  grammar of `clevr_grammar`), the other change pairs are `unparsed` (the grammar cannot read the caption:
  counted, never guessed), `wrong_type` (a change of another type), `wrong_object` (the right type, but an
  attribute of the object, or the new colour / material, differs from what the references agree on) or
  `right`. Without a grammar (Spot-the-Diff, IER) they are `named`: a change is named, whether the right one
  no metric here can tell;
- on CLEVR-style data, a confusion matrix of the true change type (the manifest's; `none` for distractors)
  against the caption's (`unparsed` a column of its own), and for the change pairs of the right type, how often
  each attribute is the wrong one.

The change pairs' outcomes partition them: right + missed + wrong_type + wrong_object + unparsed (or named)
= n_change. Nothing here imports torch.
"""
from __future__ import annotations

from collections import Counter
from typing import Mapping, Sequence

from .clevr_grammar import CHANGE_KINDS, ParsedCaption, caption_truth, parse_caption, wrong_attributes
from .no_change import says_no_change
from .outcomes import ATTRIBUTES, WRONG_ATTRIBUTES

NONE = "none"            # the change kind of a distractor pair and of a caption that says no change
UNPARSED = "unparsed"    # the caption column of what the grammar cannot read
CAPTION_KINDS = (*CHANGE_KINDS, UNPARSED)


def _true_kind(entry: Mapping) -> str:
    if not entry["changed"]:
        return NONE
    return entry["change_type"] or "change"   # an untyped change pair (Spot-the-Diff, IER)


def detector_coverage(manifest: Sequence[Mapping]) -> dict[str, int]:
    """How the no-change detector reads the split's own references: those of distractors should all say no
    change, those of change pairs none."""
    no_change = [r for e in manifest if not e["changed"] for r in e["references"]]
    change = [r for e in manifest if e["changed"] for r in e["references"]]
    return {"no_change_references": len(no_change),
            "no_change_references_detected": sum(says_no_change(r) for r in no_change),
            "change_references": len(change),
            "change_references_said_no_change": sum(says_no_change(r) for r in change)}


def reference_truths(manifest: Sequence[Mapping]) -> tuple[dict[str, ParsedCaption | None], dict[str, int]]:
    """What the references of each typed change pair agree on (`caption_truth`), and how well the grammar reads
    the split's own references: → ({pair_id: truth or None}, coverage).

    The manifest's change type is the truth; the references give the object. A pair whose references' type
    disagrees with the manifest's keeps no object (its captions' objects are then not judged) and is counted.
    """
    truths: dict[str, ParsedCaption | None] = {}
    parsed = total = disagree = no_object = 0
    for entry in manifest:
        if not entry["changed"] or entry["change_type"] is None:
            continue
        refs = list(entry["references"])
        total += len(refs)
        parsed += sum(parse_caption(r) is not None for r in refs)
        truth = caption_truth(refs)
        if truth is None or truth.change_type != entry["change_type"]:
            disagree += 1
            truth = None
        elif truth.obj is None or all(getattr(truth.obj, a) is None for a in ATTRIBUTES):
            no_object += 1
        truths[entry["pair_id"]] = truth
    return truths, {"typed_change_references": total, "typed_change_references_parsed": parsed,
                    "pairs_whose_references_disagree_with_the_manifest": disagree,
                    "pairs_whose_references_name_no_attribute": no_object}


def _outcome(entry: Mapping, said_no_change: bool, parsed: ParsedCaption | None, truth: ParsedCaption | None,
             grammar: bool) -> tuple[str, tuple[str, ...]]:
    if not entry["changed"]:
        return ("right" if said_no_change else "hallucinated"), ()
    if said_no_change:
        return "missed", ()
    if not grammar or entry["change_type"] is None:
        return "named", ()
    if parsed is None:
        return UNPARSED, ()
    if parsed.change_type != entry["change_type"]:
        return "wrong_type", ()
    wrong = wrong_attributes(parsed, truth) if truth is not None else ()
    return ("wrong_object" if wrong else "right"), tuple(wrong)


def analyze_run(predictions: Mapping[str, str], manifest: Sequence[Mapping], scores: Mapping[str, Mapping[str, float]],
                *, grammar: bool, truths: Mapping[str, ParsedCaption | None] | None = None) -> dict:
    """One captioner's analysis on a split. `predictions`: {pair_id: caption} covering the manifest's pairs;
    `scores`: {pair_id: {metric: value}} (`CaptionScorer.per_pair`); `grammar`: parse captions with the CLEVR
    grammar (`truths` from `reference_truths`, computed here when not given).
    → {"n_pairs", "counts", "pairs": [per pair, manifest order], and with the grammar "confusion" and
    "wrong_attributes"}."""
    ids = [entry["pair_id"] for entry in manifest]
    missing = [i for i in ids if i not in predictions or i not in scores]
    if missing:
        raise ValueError(f"{len(missing)} pairs of the split have no caption or no score, e.g. {missing[:5]}")
    extra = sorted(set(predictions) - set(ids))
    if extra:
        raise ValueError(f"{len(extra)} captions are for pairs not in the split, e.g. {extra[:5]}")
    if grammar and truths is None:
        truths = reference_truths(manifest)[0]
    pairs = []
    for entry in manifest:
        pair_id, caption = entry["pair_id"], predictions[entry["pair_id"]]
        said = says_no_change(caption)
        parsed = parse_caption(caption) if grammar else None
        truth = truths.get(pair_id) if grammar else None
        outcome, wrong = _outcome(entry, said, parsed, truth, grammar)
        record = {"pair_id": pair_id, "changed": bool(entry["changed"]), "change_type": entry["change_type"],
                  "caption": caption, "scores": dict(scores[pair_id]), "says_no_change": said, "outcome": outcome}
        if grammar:
            record["caption_type"] = NONE if said else (parsed.change_type if parsed is not None else UNPARSED)
            record["wrong_attributes"] = list(wrong)
        pairs.append(record)
    # Every count is read off the records, e.g. by (is a change pair, outcome). A distractor's right caption is
    # `no_change_right`, so that right + missed + wrong_type + wrong_object + unparsed (or named) = n_change.
    by = Counter((p["changed"], p["outcome"]) for p in pairs)
    n_change = sum(p["changed"] for p in pairs)
    counts = {"n_pairs": len(pairs), "n_change": n_change, "n_no_change": len(pairs) - n_change,
              "right": by[True, "right"], "no_change_right": by[False, "right"],
              "missed": by[True, "missed"], "hallucinated": by[False, "hallucinated"]}
    if grammar:
        counts |= {k: by[True, k] for k in ("wrong_type", "wrong_object", UNPARSED)}
        counts["unparsed_captions"] = sum(p["caption_type"] == UNPARSED for p in pairs)
    else:
        counts["named"] = by[True, "named"]
    result = {"n_pairs": len(manifest), "counts": counts, "pairs": pairs}
    if grammar:
        confusion = Counter((_true_kind(p), p["caption_type"]) for p in pairs)   # untyped change pairs: no row
        result["confusion"] = {"true": list(CHANGE_KINDS), "predicted": list(CAPTION_KINDS),
                               "counts": [[confusion[t, c] for c in CAPTION_KINDS] for t in CHANGE_KINDS]}
        wrong = Counter(a for p in pairs for a in p["wrong_attributes"])
        result["wrong_attributes"] = {"n_right_type": counts["right"] + counts["wrong_object"],
                                      **{a: wrong[a] for a in WRONG_ATTRIBUTES}}
    return result
