"""Caption metrics (pycocoevalcap wrapper) and retrieval metrics (CLIP4Clip multi-sentence)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clip4idc.io import write_json
from conftest import require
from clip4idc.metrics.caption import (METRIC_KEYS, PER_PAIR_KEYS, CaptionScorer, most_frequent_caption,
                                      score_files, spice_jars, spice_unavailable)
from clip4idc.metrics.retrieval import (pair_to_text_ranks, retrieval_metrics,
                                        text_to_pair_ranks)

needs_java = pytest.mark.needs_java

# Small but not trivial: capitals and punctuation for the PTB tokenizer, 2-4 references per id.
REFERENCES = {
    "000001.png": ["The blue cube has moved.", "the blue block changed its location",
                   "The blue cube was moved"],
    "000002.png": ["the small red sphere is gone", "The small red ball has disappeared.",
                   "the tiny red ball is missing", "Someone removed the small red sphere"],
    "000002.png_n": ["there is no change", "nothing has changed", "The scene is the same."],
    "000003.png": ["the large gray cylinder became yellow", "The big gray cylinder changed to yellow."],
    "000004.png": ["a purple metal cube was added", "There is a new purple shiny block."],
    "000005.png": ["the green rubber ball turned metallic", "The green matte sphere became shiny"],
    "000005.png_n": ["no change was made", "The two scenes are identical."],
}
PREDICTIONS = {
    "000001.png": "the blue cube has moved",
    "000002.png": "The small red ball is missing.",
    "000002.png_n": "there is no change",
    "000003.png": "the gray cylinder changed to yellow",
    "000004.png": "a purple cube was added",
    "000005.png": "the green ball became metal",
    "000005.png_n": "the scene has no change",
}


@pytest.fixture(scope="module")
def scorer():
    require("needs_java")
    with CaptionScorer() as s:  # one JVM for the whole module
        yield s


def _direct_pycocoevalcap(predictions, references):
    """The reference computation: pycocoevalcap used the way its COCOEvalCap does."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tok = PTBTokenizer()
    gts = tok.tokenize({i: [{"caption": c} for c in refs] for i, refs in references.items()})
    res = tok.tokenize({i: [{"caption": predictions[i]}] for i in references})
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    meteor_scorer = Meteor()
    meteor, _ = meteor_scorer.compute_score(gts, res)
    del meteor_scorer
    rouge, _ = Rouge().compute_score(gts, res)
    cider, _ = Cider().compute_score(gts, res)
    return dict(zip(METRIC_KEYS, [*bleu, meteor, rouge, cider]))


# -- caption metrics ----------------------------------------------------------------------------
def test_score_equals_direct_pycocoevalcap(scorer):
    ours = scorer.score(PREDICTIONS, REFERENCES)
    assert list(ours) == list(METRIC_KEYS)
    assert all(type(v) is float for v in ours.values())
    direct = _direct_pycocoevalcap(PREDICTIONS, REFERENCES)
    for key in METRIC_KEYS:
        assert ours[key] == float(direct[key]), key
    assert 0 < ours["BLEU-4"] < 1 and 0 < ours["CIDEr"] < 10


def test_subsets_tokenised_once_score_as_separate_calls(scorer):
    ids = list(REFERENCES)
    subsets = {"all": ids, "first": ids[:3], "rest": ids[3:][::-1]}
    got = scorer.score_subsets(PREDICTIONS, REFERENCES, subsets)
    for name, subset in subsets.items():
        assert got[name] == scorer.score({i: PREDICTIONS[i] for i in subset}, {i: REFERENCES[i] for i in subset})
    with pytest.raises(ValueError, match="subset 'bad'"):
        scorer.score_subsets(PREDICTIONS, REFERENCES, {"bad": ["no such id"]})


def test_per_pair_scores_are_pycocoevalcaps_per_image_scores(scorer):
    """Sentence-level CIDEr-D (the whole references' document frequencies), METEOR and BLEU-4 equal the
    per-image lists pycocoevalcap computes on the same corpus, bit for bit, pair by pair."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer
    tok = PTBTokenizer()
    gts = tok.tokenize({i: [{"caption": c} for c in refs] for i, refs in REFERENCES.items()})
    res = tok.tokenize({i: [{"caption": PREDICTIONS[i]}] for i in REFERENCES})
    _, cider = Cider().compute_score(gts, res)
    _, bleu = Bleu(4).compute_score(gts, res, verbose=0)
    meteor_scorer = Meteor()
    _, meteor = meteor_scorer.compute_score(gts, res)
    del meteor_scorer
    got = scorer.per_pair(PREDICTIONS, REFERENCES)
    assert list(got) == list(REFERENCES)
    for k, i in enumerate(REFERENCES):
        assert list(got[i]) == list(PER_PAIR_KEYS)
        assert got[i] == {"CIDEr": float(cider[k]), "BLEU-4": float(bleu[3][k]), "METEOR": float(meteor[k])}, i
    # The scores differ across pairs (a constant would pass a weaker check), and the corpus CIDEr-D is their mean.
    assert len({round(v["CIDEr"], 9) for v in got.values()}) > 3
    assert np.mean([v["CIDEr"] for v in got.values()]) == pytest.approx(scorer.score(PREDICTIONS, REFERENCES)["CIDEr"])
    # Document frequencies are those of the references passed: a pair's CIDEr-D moves with its corpus.
    alone = scorer.per_pair({i: PREDICTIONS[i] for i in list(REFERENCES)[:2]},
                            {i: REFERENCES[i] for i in list(REFERENCES)[:2]})
    assert alone["000001.png"]["CIDEr"] != got["000001.png"]["CIDEr"]
    with pytest.raises(ValueError, match="same pair ids"):
        scorer.per_pair({"000001.png": "x"}, REFERENCES)


def test_scorer_is_reusable(scorer):
    first = scorer.score(PREDICTIONS, REFERENCES)
    assert scorer.score(PREDICTIONS, REFERENCES) == first


def test_captions_seen_before_are_not_tokenised_again(scorer, monkeypatch):
    first = scorer.score(PREDICTIONS, REFERENCES)
    sent, tokenize = [], scorer._tokenizer.tokenize
    monkeypatch.setattr(scorer._tokenizer, "tokenize", lambda captions: sent.append(captions) or tokenize(captions))
    assert scorer.score(PREDICTIONS, REFERENCES) == first
    assert sent == []                                    # no JVM started
    new = dict(PREDICTIONS, **{"000001.png": "A brand new caption, never seen."})
    got = scorer.score(new, REFERENCES)
    assert [[c["caption"] for caps in call.values() for c in caps] for call in sent] == [[new["000001.png"]]]
    direct = _direct_pycocoevalcap(new, REFERENCES)     # every caption tokenised together, as upstream
    assert got == {key: float(direct[key]) for key in METRIC_KEYS}


def test_perfect_predictions_score_one(scorer):
    perfect = {i: refs[0] for i, refs in REFERENCES.items()}
    scores = scorer.score(perfect, REFERENCES)
    assert scores["BLEU-4"] == pytest.approx(1.0, abs=1e-6)
    assert scores["BLEU-1"] == pytest.approx(1.0, abs=1e-6)
    assert scores["ROUGE-L"] == pytest.approx(1.0)
    assert scores["METEOR"] > 0.9


def test_empty_hypotheses_do_not_crash(scorer):
    preds = dict(PREDICTIONS, **{"000001.png": "", "000003.png": "..."})  # "..." tokenises to ""
    scores = scorer.score(preds, REFERENCES)
    assert all(np.isfinite(v) and v >= 0 for v in scores.values())
    assert scores["CIDEr"] < scorer.score(PREDICTIONS, REFERENCES)["CIDEr"]
    # every hypothesis empty: all zero, still no crash
    zeros = scorer.score({i: "" for i in REFERENCES}, REFERENCES)
    assert all(v == 0.0 for v in zeros.values())


def test_line_breaks_stay_within_one_caption(scorer):
    # Java's tokenizer also splits lines at "\r" and U+2028, which upstream does not replace:
    # the rest of such a caption would be scored as the next pair's caption, and so on.
    preds = dict(PREDICTIONS, **{"000001.png": "the blue cube\rhas moved",
                                 "000003.png": "the gray cylinder\u2028changed to yellow"})
    assert scorer.score(preds, REFERENCES) == scorer.score(PREDICTIONS, REFERENCES)


def test_mismatched_ids_are_named(scorer):
    preds = {i: c for i, c in PREDICTIONS.items() if i != "000004.png"}
    preds["999999.png"] = "an extra pair"
    with pytest.raises(ValueError) as err:
        scorer.score(preds, REFERENCES)
    message = str(err.value)
    assert "000004.png" in message and "999999.png" in message
    assert "1 missing from predictions" in message and "1 missing from references" in message


@pytest.mark.parametrize("preds, refs, match", [
    ({"a": ["x"]}, {"a": ["x"]}, "one caption string"),
    ({"a": "x"}, {"a": []}, "non-empty list"),
    ({"a": "x"}, {"a": "x"}, "non-empty list"),
    ({}, {}, "no pair ids"),
    (["x"], {"a": ["x"]}, "expected an object"),
])
def test_bad_inputs_raise(scorer, preds, refs, match):
    with pytest.raises(ValueError, match=match):
        scorer.score(preds, refs)


def test_score_files_names_the_files(scorer, tmp_path):
    write_json(tmp_path / "preds.json", PREDICTIONS)
    write_json(tmp_path / "refs.json", REFERENCES)
    assert score_files(tmp_path / "preds.json", tmp_path / "refs.json", scorer) == \
        scorer.score(PREDICTIONS, REFERENCES)
    write_json(tmp_path / "short.json", {"000001.png": "x"})
    with pytest.raises(ValueError, match="short.json"):
        score_files(tmp_path / "short.json", tmp_path / "refs.json", scorer)


@needs_java
def test_closed_scorer_refuses():
    s = CaptionScorer()
    s.close()
    s.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        s.score(PREDICTIONS, REFERENCES)


def test_most_frequent_caption():
    caps = ["The cube moved.", "the cube moved.", "  THE CUBE MOVED. ", "a ball", "a ball", "x"]
    assert most_frequent_caption(caps) == "the cube moved."
    # tie between "b b" and "a a": lexicographically smallest, whatever the order
    tied = ["b b", "a a", "B B", "A  A", "c"]
    assert most_frequent_caption(tied) == "a a"
    assert most_frequent_caption(list(reversed(tied))) == "a a"
    with pytest.raises(ValueError, match="non-blank"):
        most_frequent_caption(["", "  "])


# -- retrieval metrics --------------------------------------------------------------------------
# 4 captions, 3 pairs; pair 0 has two captions.
SIM = np.array([
    [0.9, 0.1, 0.2],  # caption of pair 0: own 0.9 is best                     -> rank 1
    [0.3, 0.5, 0.1],  # caption of pair 0: 0.5 beats own 0.3                   -> rank 2
    [0.2, 0.4, 0.4],  # caption of pair 1: ties with pair 2 (not strictly less) -> rank 1
    [0.8, 0.7, 0.4],  # caption of pair 2: 0.8 and 0.7 beat own 0.4             -> rank 3
])
TEXT_PAIR = np.array([0, 0, 1, 2])


def test_t2p_hand_computed():
    assert text_to_pair_ranks(SIM, TEXT_PAIR).tolist() == [1, 2, 1, 3]
    t2p = retrieval_metrics(SIM, TEXT_PAIR)["t2p"]
    assert t2p == {"R@1": 50.0, "R@5": 100.0, "R@10": 100.0, "MedR": 1.5, "MeanR": 1.75}


def test_p2t_max_over_caption_group_and_ties():
    # pair 0: groups score [max(.9,.3), .2, .8]            -> own .9 best     -> rank 1
    # pair 1: groups score [max(.1,.5)=.5, .4, .7]         -> .5 and .7 beat  -> rank 3
    #         (a mean over pair 0's captions, .3, would give rank 2: the max matters)
    # pair 2: groups score [max(.2,.1)=.2, .4, .4]         -> tie with own    -> rank 1
    assert pair_to_text_ranks(SIM, TEXT_PAIR).tolist() == [1, 3, 1]
    p2t = retrieval_metrics(SIM, TEXT_PAIR)["p2t"]
    assert p2t["R@1"] == pytest.approx(200 / 3)
    assert p2t["MedR"] == 1.0 and p2t["MeanR"] == pytest.approx(5 / 3)


def test_caption_order_does_not_matter():
    order = np.array([3, 1, 2, 0])
    assert retrieval_metrics(SIM[order], TEXT_PAIR[order]) == retrieval_metrics(SIM, TEXT_PAIR)


def test_matches_brute_force_on_random_data():
    rng = np.random.default_rng(0)
    n_pairs = 30
    text_pair = np.concatenate([np.arange(n_pairs), rng.integers(0, n_pairs, 50)])
    sim = rng.normal(size=(len(text_pair), n_pairs)).round(1)  # rounding makes ties
    t2p = [1 + sum(sim[i, k] > sim[i, text_pair[i]] for k in range(n_pairs)) for i in range(len(sim))]
    group = [[max(sim[i, j] for i in range(len(sim)) if text_pair[i] == k) for k in range(n_pairs)]
             for j in range(n_pairs)]
    p2t = [1 + sum(group[j][k] > group[j][j] for k in range(n_pairs)) for j in range(n_pairs)]
    assert text_to_pair_ranks(sim, text_pair).tolist() == t2p
    assert pair_to_text_ranks(sim, text_pair).tolist() == p2t
    r = retrieval_metrics(sim, text_pair)
    assert r["t2p"]["R@10"] == pytest.approx(100 * np.mean(np.array(t2p) <= 10))
    assert r["p2t"]["MedR"] == np.median(p2t)


@pytest.mark.parametrize("sim, text_pair, match", [
    (SIM, np.array([0, 0, 1, 1]), "pairs have none"),
    (SIM, np.array([0, 1, 2]), "expected shape"),
    (SIM, np.array([0, 0, 1, 3]), r"\[0, 3\)"),
    (SIM, TEXT_PAIR.astype(float), "integer"),
    (SIM[0], TEXT_PAIR, "matrix"),
    (np.where(SIM == 0.5, np.nan, SIM), TEXT_PAIR, "NaN"),
])
def test_retrieval_validation(sim, text_pair, match):
    with pytest.raises(ValueError, match=match):
        retrieval_metrics(sim, text_pair)


# -- evaluation subsets (CLEVR-Change Total, change / no-change only, per change type) ------------

def test_subsets_of_a_prepared_clevr_split_hold_exactly_their_pairs(data_synth_root, data_prepared_dir):
    import json

    from clip4idc.data.dataset import Prepared
    from clip4idc.metrics.subsets import evaluation_subsets

    manifest = Prepared(data_prepared_dir).manifest("test")
    subsets = evaluation_subsets(manifest)
    type_mapping = json.loads((data_synth_root / "type_mapping.json").read_text())
    splits = json.loads((data_synth_root / "splits.json").read_text())
    scenes = {f"{n:06d}.png" for n in splits["test"]}
    assert set(subsets["total"]) == scenes | {f"{s}_n" for s in scenes}
    assert set(subsets["change"]) == scenes
    assert set(subsets["no-change"]) == {f"{s}_n" for s in scenes}
    typed = {name for name in subsets if name not in ("total", "change", "no-change")}
    assert typed and typed <= set(type_mapping)
    for change_type, names in type_mapping.items():
        expected = set(names) & scenes  # type_mapping.json lists every split's scenes
        assert set(subsets.get(change_type, [])) == expected, change_type
    assert sum(len(subsets[t]) for t in typed) == len(subsets["change"])


def test_subsets_without_distractors_or_types_are_the_total_only():
    from clip4idc.metrics.subsets import evaluation_subsets
    manifest = [{"pair_id": "1", "changed": True, "change_type": None},
                {"pair_id": "2", "changed": True, "change_type": None}]
    assert evaluation_subsets(manifest) == {"total": ["1", "2"]}
    with pytest.raises(ValueError, match="twice"):
        evaluation_subsets(manifest + manifest[:1])


def test_change_detection_counts_captions_that_name_a_change_and_that_say_no_change():
    from clip4idc.metrics.subsets import change_detection
    refs = {"c1": ["the red cube moved"], "c2": ["a sphere was added"], "c3": ["the cube turned blue"],
            "n1": ["no change was made.", "the two scenes are identical"], "n2": ["nothing has changed"]}
    subsets = {"total": list(refs), "change": ["c1", "c2", "c3"], "no-change": ["n1", "n2"]}
    preds = {"c1": "the red cube moved", "c2": "Nothing  has changed", "c3": "there are no changes",
             "n1": "the two scenes are identical .", "n2": "a sphere was added"}
    got = change_detection(preds, subsets)
    # c2 and c3 say no change (case, spaces, the period ignored; c3 a paraphrase no reference uses); n1 does,
    # n2 names a change.
    assert got == {"change_named": 1 / 3, "no_change_said": 1 / 2, "n_change_named": 1, "n_change": 3,
                   "n_no_change_said": 1, "n_no_change": 2}
    constant = {i: "nothing has changed" for i in refs}
    assert change_detection(constant, subsets)["change_named"] == 0.0
    assert change_detection(preds, {"total": list(refs)}) is None   # no distractors: not defined


@needs_java
def test_evaluate_scores_each_subset_like_a_direct_pycocoevalcap_call(tmp_path):
    from clip4idc.stages.evaluate import evaluate_predictions
    types = {"000001.png": "move", "000002.png": "drop", "000003.png": "color", "000004.png": "add",
             "000005.png": "material"}
    manifest = [{"pair_id": i, "changed": not i.endswith("_n"), "change_type": types.get(i)} for i in REFERENCES]
    write_json(tmp_path / "pred.json", PREDICTIONS)
    write_json(tmp_path / "refs.json", REFERENCES)
    result = evaluate_predictions(tmp_path / "pred.json", tmp_path / "refs.json", tmp_path / "m.json",
                                  variant="adapt", seed=1, split="test", manifest=manifest)
    assert result["metrics"] == pytest.approx(_direct_pycocoevalcap(PREDICTIONS, REFERENCES), abs=1e-12)
    change = [i for i in REFERENCES if not i.endswith("_n")]
    no_change = [i for i in REFERENCES if i.endswith("_n")]
    assert set(result["subsets"]) == {"change", "no-change", *types.values()}
    for name, ids in [("change", change), ("no-change", no_change), ("move", ["000001.png"])]:
        sub = result["subsets"][name]
        assert sub["n_pairs"] == len(ids)
        direct = _direct_pycocoevalcap({i: PREDICTIONS[i] for i in ids}, {i: REFERENCES[i] for i in ids})
        assert sub["metrics"] == pytest.approx(direct, abs=1e-12), name
    # A subset is a corpus of its own: its CIDEr is not the total's.
    assert result["subsets"]["change"]["metrics"]["CIDEr"] != pytest.approx(result["metrics"]["CIDEr"])
    assert result["detection"]["n_change"] == len(change) and result["detection"]["n_no_change"] == len(no_change)


needs_no_corenlp = pytest.mark.skipif(spice_unavailable() is None,
                                      reason="Stanford CoreNLP is installed here: SPICE would run")


def test_spice_looks_for_corenlp_where_pycocoevalcap_spice_does():
    import pycocoevalcap.spice.spice as spice_module
    lib = Path(spice_module.__file__).parent / "lib"
    assert [Path(p) for p in spice_jars()] == [lib / "stanford-corenlp-3.6.0.jar",
                                                lib / "stanford-corenlp-3.6.0-models.jar"]


@needs_no_corenlp
def test_a_scorer_asked_for_spice_it_cannot_run_refuses_without_downloading():
    with pytest.raises(RuntimeError, match=r"SPICE was asked for.*stanford-corenlp-3\.6\.0\.jar"):
        CaptionScorer(spice=True)


@needs_java
@needs_no_corenlp
def test_evaluate_skips_spice_with_a_plain_message_and_records_why(tmp_path, capsys):
    from clip4idc.stages.evaluate import evaluate_predictions
    write_json(tmp_path / "pred.json", PREDICTIONS)
    write_json(tmp_path / "refs.json", REFERENCES)
    with_spice = evaluate_predictions(tmp_path / "pred.json", tmp_path / "refs.json", tmp_path / "a.json",
                                      variant="adapt", seed=1, split="test", spice=True)
    out = capsys.readouterr().out
    assert "SPICE skipped: Stanford CoreNLP 3.6.0 is not installed" in out
    assert "stanford-corenlp-3.6.0-models.jar" in with_spice["skipped"]["SPICE"]
    assert "SPICE" not in with_spice["metrics"]
    without = evaluate_predictions(tmp_path / "pred.json", tmp_path / "refs.json", tmp_path / "b.json",
                                   variant="adapt", seed=1, split="test")
    assert without["skipped"] == {} and without["metrics"] == with_spice["metrics"]
    assert "SPICE" not in capsys.readouterr().out
