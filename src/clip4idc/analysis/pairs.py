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
    pairs, outcomes, attributes = [], Counter(), Counter()
    confusion = {kind: Counter() for kind in CHANGE_KINDS}
    unparsed_captions = 0
    for entry in manifest:
        pair_id, caption = entry["pair_id"], predictions[entry["pair_id"]]
        said = says_no_change(caption)
        parsed = parse_caption(caption) if grammar else None
        truth = truths.get(pair_id) if grammar else None
        outcome, wrong = _outcome(entry, said, parsed, truth, grammar)
        outcomes[outcome] += 1
        outcomes["no_change_right"] += not entry["changed"] and outcome == "right"
        attributes.update(wrong)
        if entry["changed"] and outcome in ("right", "wrong_object"):   # a distractor's "right" names no type
            attributes["n_right_type"] += 1
        record = {"pair_id": pair_id, "changed": bool(entry["changed"]), "change_type": entry["change_type"],
                  "caption": caption, "scores": dict(scores[pair_id]), "says_no_change": said, "outcome": outcome}
        if grammar:
            caption_kind = NONE if said else (parsed.change_type if parsed is not None else UNPARSED)
            unparsed_captions += caption_kind == UNPARSED
            record["caption_type"] = caption_kind
            record["wrong_attributes"] = list(wrong)
            true_kind = _true_kind(entry)
            if true_kind in confusion:
                confusion[true_kind][caption_kind] += 1
        pairs.append(record)
    n_change = sum(e["changed"] for e in manifest)
    # "right" counts change pairs only (a distractor's right caption is counted by `no_change_right`), so that
    # right + missed + wrong_type + wrong_object + unparsed (or named) = n_change.
    counts = {"n_pairs": len(manifest), "n_change": n_change, "n_no_change": len(manifest) - n_change,
              "right": outcomes["right"] - outcomes["no_change_right"],
              "no_change_right": outcomes["no_change_right"],
              **{k: outcomes[k] for k in ("missed", "hallucinated")}}
    if grammar:
        counts |= {k: outcomes[k] for k in ("wrong_type", "wrong_object", UNPARSED)}
        counts["unparsed_captions"] = unparsed_captions
    else:
        counts["named"] = outcomes["named"]
    result = {"n_pairs": len(manifest), "counts": counts, "pairs": pairs}
    if grammar:
        result["confusion"] = {"true": list(CHANGE_KINDS), "predicted": list(CAPTION_KINDS),
                               "counts": [[confusion[t][p] for p in CAPTION_KINDS] for t in CHANGE_KINDS]}
        result["wrong_attributes"] = {"n_right_type": attributes["n_right_type"],
                                      **{a: attributes[a] for a in WRONG_ATTRIBUTES}}
    return result
