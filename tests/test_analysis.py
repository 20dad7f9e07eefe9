"""The error analysis (analysis/pairs.py, stage analyze, report/failures.py): outcomes, confusion matrix and
failure counts on a constructed prediction set against counts made by hand, and the stage's files."""
from __future__ import annotations

import json
from statistics import mean, stdev

import pytest

from clip4idc.analysis.outcomes import failure_rates
from clip4idc.analysis.pairs import CAPTION_KINDS, analyze_run, detector_coverage, reference_truths
from conftest import require


def _pair(pair_id, change_type, refs, changed=True):
    return {"pair_id": pair_id, "changed": changed, "change_type": change_type, "references": refs,
            "before": f"images/{pair_id}", "after": f"sc_images/{pair_id}"}


NO_CHANGE_REFS = ["there is no change", "nothing has changed", "the scene remains the same"]
MANIFEST = [
    _pair("c1", "color", ["the small red metal cube changed to blue", "the tiny red shiny block turned blue"]),
    _pair("c2", "color", ["the large gray rubber sphere became yellow", "the big gray matte ball is now yellow"]),
    _pair("m1", "material", ["the large green rubber cylinder became metallic", "the big green matte cylinder "
                                                                                 "turned shiny"]),
    _pair("a1", "add", ["a small purple metal sphere has been added", "someone added a tiny purple shiny ball"]),
    _pair("a2", "add", ["a large cyan rubber cube has been added", "there is a new big cyan matte block"]),
    _pair("d1", "drop", ["the small yellow rubber cylinder is missing", "someone removed the tiny yellow matte "
                                                                          "cylinder"]),
    _pair("v1", "move", ["the large brown metal cube moved", "the big brown shiny block changed its location"]),
    _pair("v2", "move", ["the small blue rubber sphere moved", "someone moved the tiny blue matte ball"]),
    _pair("n1", None, NO_CHANGE_REFS, changed=False),
    _pair("n2", None, NO_CHANGE_REFS, changed=False),
    _pair("n3", None, NO_CHANGE_REFS, changed=False),
]
# Each caption chosen for one outcome, written down by hand beside it.
PREDICTIONS = {
    "c1": "the small red metal cube changed to blue",      # right
    "c2": "the large gray rubber sphere became green",     # wrong object: new colour
    "m1": "the large green rubber cylinder moved",         # wrong type: move for material
    "a1": "there is no change",                            # missed
    "a2": "a large red rubber cube has been added",        # wrong object: colour
    "d1": "the the cylinder cylinder",                     # unparsed
    "v1": "the small brown metal cube moved",              # wrong object: size
    "v2": "the blue sphere has been moved",                # right (size and material left out: not wrong)
    "n1": "nothing has changed",                           # right
    "n2": "the red cube changed to blue",                  # hallucinated (a color change)
    "n3": "a a a",                                         # hallucinated (unparsed)
}
OUTCOMES = {"c1": "right", "c2": "wrong_object", "m1": "wrong_type", "a1": "missed", "a2": "wrong_object",
            "d1": "unparsed", "v1": "wrong_object", "v2": "right", "n1": "right", "n2": "hallucinated",
            "n3": "hallucinated"}
SCORES = {m["pair_id"]: {"BLEU-4": 0.1 * k, "METEOR": 0.05 * k, "CIDEr": 0.3 * k} for k, m in enumerate(MANIFEST)}


def test_outcomes_counts_and_confusion_equal_hand_counts():
    got = analyze_run(PREDICTIONS, MANIFEST, SCORES, grammar=True)
    assert {p["pair_id"]: p["outcome"] for p in got["pairs"]} == OUTCOMES
    assert [p["pair_id"] for p in got["pairs"]] == [m["pair_id"] for m in MANIFEST]
    assert got["counts"] == {"n_pairs": 11, "n_change": 8, "n_no_change": 3, "right": 2, "no_change_right": 1,
                             "missed": 1, "hallucinated": 2, "wrong_type": 1, "wrong_object": 3, "unparsed": 1,
                             "unparsed_captions": 2}
    # The change pairs' outcomes partition them; the distractors' too.
    c = got["counts"]
    assert c["right"] + c["missed"] + c["wrong_type"] + c["wrong_object"] + c["unparsed"] == c["n_change"]
    assert c["no_change_right"] + c["hallucinated"] == c["n_no_change"]
    conf = got["confusion"]
    assert conf["true"] == ["color", "material", "add", "drop", "move", "none"]
    assert conf["predicted"] == list(CAPTION_KINDS) == ["color", "material", "add", "drop", "move", "none", "unparsed"]
    by_hand = {("color", "color"): 2, ("material", "move"): 1, ("add", "none"): 1, ("add", "add"): 1,
               ("drop", "unparsed"): 1, ("move", "move"): 2, ("none", "none"): 1, ("none", "color"): 1,
               ("none", "unparsed"): 1}
    for t, row in zip(conf["true"], conf["counts"]):
        for p, n in zip(conf["predicted"], row):
            assert n == by_hand.get((t, p), 0), (t, p)
    assert got["wrong_attributes"] == {"n_right_type": 5, "size": 1, "color": 1, "material": 0, "shape": 0, "new": 1}
    wrong = {p["pair_id"]: p["wrong_attributes"] for p in got["pairs"] if p["wrong_attributes"]}
    assert wrong == {"c2": ["new"], "a2": ["color"], "v1": ["size"]}
    assert got["pairs"][0]["scores"] == SCORES["c1"]
    rates = failure_rates(got["counts"])
    assert rates == {"right": 2 / 8, "missed": 1 / 8, "hallucinated": 2 / 3, "wrong_type": 1 / 8, "wrong_object": 3 / 8,
                     "unparsed": 1 / 8}


def test_without_grammar_only_missed_and_hallucinated_are_judged():
    got = analyze_run(PREDICTIONS, MANIFEST, SCORES, grammar=False)
    assert "confusion" not in got and "wrong_attributes" not in got
    assert got["counts"] == {"n_pairs": 11, "n_change": 8, "n_no_change": 3, "right": 0, "no_change_right": 1,
                             "missed": 1, "hallucinated": 2, "named": 7}
    assert failure_rates(got["counts"]) == {"right": None, "missed": 1 / 8, "hallucinated": 2 / 3, "wrong_type": None,
                                            "wrong_object": None, "unparsed": None}
    # Data without distractors (Spot-the-Diff) cannot show a hallucinated change.
    changes = [m for m in MANIFEST if m["changed"]]
    only = analyze_run({m["pair_id"]: PREDICTIONS[m["pair_id"]] for m in changes}, changes, SCORES, grammar=False)
    assert failure_rates(only["counts"])["hallucinated"] is None


def test_reference_truths_and_the_detector_on_the_split_references():
    truths, coverage = reference_truths(MANIFEST)
    assert truths["c1"].obj.color == "red" and truths["c1"].new == "blue" and truths["c1"].obj.shape == "cube"
    assert coverage == {"typed_change_references": 16, "typed_change_references_parsed": 16,
                        "pairs_whose_references_disagree_with_the_manifest": 0,
                        "pairs_whose_references_name_no_attribute": 0}
    assert detector_coverage(MANIFEST) == {"no_change_references": 9, "no_change_references_detected": 9,
                                           "change_references": 16, "change_references_said_no_change": 0}
    # References that name another change than the manifest's: the pair keeps no object, and is counted.
    bad = [dict(MANIFEST[0], change_type="move")]
    truths, coverage = reference_truths(bad)
    assert truths == {"c1": None} and coverage["pairs_whose_references_disagree_with_the_manifest"] == 1
    got = analyze_run({"c1": "the small red metal cube moved"}, bad, SCORES, grammar=True, truths=truths)
    assert got["pairs"][0]["outcome"] == "right"   # the right type; its object cannot be judged


def test_bad_prediction_sets_are_refused():
    with pytest.raises(ValueError, match="no caption or no score"):
        analyze_run({k: v for k, v in PREDICTIONS.items() if k != "c1"}, MANIFEST, SCORES, grammar=True)
    with pytest.raises(ValueError, match="not in the split"):
        analyze_run(dict(PREDICTIONS, zz="x"), MANIFEST, SCORES, grammar=True)


def test_failure_table_and_gallery_from_analyses():
    from clip4idc.report.failures import attribute_table, failure_table, gallery_examples
    seeds = []
    for k in range(3):
        preds = dict(PREDICTIONS)
        if k == 1:
            preds["a1"] = "a small purple metal sphere has been added"   # one fewer miss
        if k == 2:
            preds["n3"] = "nothing has changed"                         # one fewer hallucination
        seeds.append({"variant": "adapt", "seed": 2021 + k, "split": "test", "grammar": True,
                      **analyze_run(preds, MANIFEST, SCORES, grammar=True)})
    runs = {"adapt": seeds}
    constant = {"variant": "constant", "seed": None, "split": "test", "grammar": True,
                **analyze_run({m["pair_id"]: "there is no change" for m in MANIFEST}, MANIFEST, SCORES, grammar=True)}
    tex = "\n".join(failure_table(runs, {"constant": constant}, "Synthetic", ":s"))
    missed = [1 / 8, 0, 1 / 8]
    assert f"{100 * mean(missed):.1f}" in tex and f"{100 * stdev(missed):.1f}" in tex
    hallucinated = [2 / 3, 2 / 3, 1 / 3]
    assert f"{100 * mean(hallucinated):.1f}" in tex
    assert r"\label{tab:failures:s}" in tex and "100.0" in tex   # the constant caption misses every change
    assert "of 8 change pairs" in tex and "of 3 no-change pairs" in tex
    tex = "\n".join(attribute_table(runs, "Synthetic", ":s"))
    assert r"\label{tab:attributes:s}" in tex
    # Gallery: per change type (and the distractors), the adapted model's lowest CIDEr-D pair.
    first = {"adapt": seeds[0], "clip-ft": seeds[1]}
    examples = gallery_examples(MANIFEST, first)
    assert [e["pair_id"] for e in examples] == ["c1", "m1", "a1", "d1", "v1", "n1"]
    assert examples[0]["captions"] == {"clip-ft": PREDICTIONS["c1"], "adapt": PREDICTIONS["c1"]}
    assert examples[0]["note"].endswith("CIDEr-D 0.0, right")
    assert "wrong object (size)" in examples[4]["note"]


@pytest.mark.needs_java
def test_analyze_stage_writes_every_run_and_per_pair_cider_equals_pycocoevalcap(tmp_path):
    require("needs_java")
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    from clip4idc.io import write_json
    from clip4idc.stages.analyze import analyze_predictions
    refs = {m["pair_id"]: m["references"] for m in MANIFEST}
    runs = {}
    for name in ("adapt/seed1", "constant"):
        runs[name] = tmp_path / "pred" / f"{name}.json"
        runs[name].parent.mkdir(parents=True, exist_ok=True)
        write_json(runs[name], PREDICTIONS if name != "constant" else {i: "there is no change" for i in refs})
    out = tmp_path / "analysis"
    analyze_predictions(runs, refs, MANIFEST, out, split="test", dataset="d", grammar=True)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.json")) == [
        "adapt/seed1.json", "constant.json", "references.json"]
    got = json.loads((out / "adapt/seed1.json").read_text())
    assert (got["variant"], got["seed"]) == ("adapt", 1)
    tok = PTBTokenizer()
    gts = tok.tokenize({i: [{"caption": c} for c in r] for i, r in refs.items()})
    res = tok.tokenize({i: [{"caption": PREDICTIONS[i]}] for i in refs})
    _, cider = Cider().compute_score(gts, res)
    assert [p["scores"]["CIDEr"] for p in got["pairs"]] == [float(x) for x in cider]
    assert {p["pair_id"]: p["outcome"] for p in got["pairs"]} == OUTCOMES
    assert json.loads((out / "constant.json").read_text())["counts"]["missed"] == 8
    # A missing predictions file: one error naming it, and no folder written.
    runs["adapt/seed2"] = tmp_path / "pred" / "adapt" / "seed2.json"
    with pytest.raises(FileNotFoundError, match="seed2.json"):
        analyze_predictions(runs, refs, MANIFEST, tmp_path / "other", split="test", dataset="d", grammar=True)
    assert not (tmp_path / "other").exists()


def test_report_parts_without_grammar_or_distractors():
    """Spot-the-Diff / IER: no change types, no distractors, no grammar: the failure table has the missed column
    only, the attribute table is a comment, and the gallery shows the lowest-scoring pairs overall."""
    from clip4idc.report.failures import attribute_table, failure_table, gallery_examples
    manifest = [_pair(f"s{k}", None, [f"the car number {k} is gone", "a car left"]) for k in range(7)]
    preds = {m["pair_id"]: ("there is no difference" if k < 2 else "the car is gone") for k, m in enumerate(manifest)}
    scores = {m["pair_id"]: {"BLEU-4": 0.0, "METEOR": 0.0, "CIDEr": [0.5, 0.1, 0.9, 0.2, 0.3, 0.0, 0.7][k]}
              for k, m in enumerate(manifest)}
    run = {"variant": "adapt", "seed": 1, "split": "test", "grammar": False,
           **analyze_run(preds, manifest, scores, grammar=False)}
    assert run["counts"]["missed"] == 2 and run["counts"]["named"] == 5
    tex = "\n".join(failure_table({"adapt": [run]}, {"constant": run}, "Spot", ":s"))
    header = next(line for line in tex.splitlines() if line.startswith("Model"))
    assert header == r"Model & Missed change \\" and "28.6" in tex   # 2 of 7
    assert attribute_table({"adapt": [run]}, "Spot", ":s")[0].startswith("% No wrong-attribute table")
    examples = gallery_examples(manifest, {"adapt": run})
    assert [e["pair_id"] for e in examples] == ["s5", "s1", "s3", "s4", "s0"]   # CIDEr-D ascending
