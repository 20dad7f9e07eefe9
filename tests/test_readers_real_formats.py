"""Spot-the-Diff and Image-Editing-Request readers on small hand-built trees in their real on-disk formats."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from clip4idc.data.prepare import prepare
from clip4idc.data.readers import (READERS, IerFormatError, SpotTheDiffFormatError, read_dataset, read_ier,
                                   read_spot_the_diff)


def _image(path, fmt, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    im = Image.fromarray(pixels)
    if fmt == "GIF":
        im = im.convert("P")  # palette image: prepare must convert it to RGB
    im.save(path, format=fmt)


def _json(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj), encoding="utf-8")


# ----------------------------------------------------------------------------------------- Spot-the-Diff

SPOT = {
    "train": [{"img_id": "12", "sentences": ["the car is gone ", "a man appears"]},
              {"img_id": "7", "sentences": ["the truck moved"]},
              {"img_id": "12", "sentences": ["", "  there is a new bike"]}],  # same img_id: merged
    "val": [{"img_id": "300", "sentences": ["no difference"]},
            {"img_id": "301", "sentences": ["two people left", "a cart arrived", "   "]}],
    "test": [{"img_id": "5000", "sentences": ["the bus is gone"]},
             {"img_id": "41", "sentences": ["more people"], "extra": "ignored"}],
}


def _spot_tree(root, annotations=SPOT):
    for split, entries in annotations.items():
        _json(root / "annotations" / f"{split}.json", entries)
    ids = dict.fromkeys(e["img_id"] for entries in annotations.values() for e in entries)
    for n, img_id in enumerate(ids):
        _image(root / "resized_images" / f"{img_id}.png", "PNG", 2 * n)
        _image(root / "resized_images" / f"{img_id}_2.png", "PNG", 2 * n + 1)
        _image(root / "resized_images" / f"{img_id}_diff.jpg", "JPEG", 99)
    return root


def test_spot_the_diff_records(tmp_path):
    records = read_spot_the_diff(_spot_tree(tmp_path))
    assert [(r.split, r.pair_id) for r in records] == [
        ("train", "12"), ("train", "7"), ("val", "300"), ("val", "301"), ("test", "5000"), ("test", "41")]
    by_id = {r.pair_id: r for r in records}
    # the two "12" entries merge, sentences in file order, stripped; empty ones stay (prepare decides)
    assert by_id["12"].references == ("the car is gone", "a man appears", "", "there is a new bike")
    assert by_id["7"].references == ("the truck moved",)
    assert by_id["301"].references == ("two people left", "a cart arrived", "")
    assert [len(r.references) for r in records] == [4, 1, 1, 3, 1, 1]
    r = by_id["5000"]
    assert (r.before, r.after, r.group) == ("resized_images/5000.png", "resized_images/5000_2.png", "5000")
    assert all(r.changed and r.change_type is None and r.group == r.pair_id for r in records)
    assert read_dataset("spot_the_diff", tmp_path) == records
    assert READERS["spot_the_diff"] is read_spot_the_diff


def test_spot_the_diff_missing_annotation_file(tmp_path):
    _spot_tree(tmp_path)
    (tmp_path / "annotations" / "val.json").unlink()
    with pytest.raises(SpotTheDiffFormatError, match=r"annotations/val\.json is missing"):
        read_spot_the_diff(tmp_path)
    with pytest.raises(SpotTheDiffFormatError, match="is not a directory"):
        read_spot_the_diff(tmp_path / "nowhere")


def test_spot_the_diff_img_id_in_two_splits(tmp_path):
    annotations = {**SPOT, "test": SPOT["test"] + [{"img_id": "7", "sentences": ["again"]}]}
    _spot_tree(tmp_path, annotations)
    with pytest.raises(SpotTheDiffFormatError,
                       match=r"1 img_id\(s\) .*: 7 \(annotations/train\.json and annotations/test\.json\)"):
        read_spot_the_diff(tmp_path)


def test_spot_the_diff_missing_after_image(tmp_path):
    _spot_tree(tmp_path)
    (tmp_path / "resized_images" / "300_2.png").unlink()
    with pytest.raises(SpotTheDiffFormatError, match=r"1 image file\(s\) missing, e\.g\. resized_images/300_2\.png"):
        read_spot_the_diff(tmp_path)


def test_spot_the_diff_malformed_entry(tmp_path):
    _spot_tree(tmp_path)
    _json(tmp_path / "annotations" / "val.json", [SPOT["val"][0], {"img_id": "301"}])
    with pytest.raises(SpotTheDiffFormatError, match=r"val\.json: entry 1 has no 'sentences'"):
        read_spot_the_diff(tmp_path)
    _json(tmp_path / "annotations" / "val.json", [{"img_id": 300, "sentences": ["x"]}])
    with pytest.raises(SpotTheDiffFormatError, match=r"val\.json: entry 0: 'img_id' must be a str"):
        read_spot_the_diff(tmp_path)
    (tmp_path / "annotations" / "val.json").write_text("[{", encoding="utf-8")
    with pytest.raises(SpotTheDiffFormatError, match=r"val\.json is not valid JSON"):
        read_spot_the_diff(tmp_path)


def test_spot_the_diff_img_id_without_any_sentence_is_an_error(tmp_path):
    _spot_tree(tmp_path, {**SPOT, "val": SPOT["val"] + [{"img_id": "302", "sentences": []}]})
    with pytest.raises(SpotTheDiffFormatError, match=r"1 img_id\(s\) have no sentence at all.*302"):
        read_spot_the_diff(tmp_path)


# As in the official files: pairs whose only sentence is "" in every split (train 37, val 4, test 7 there;
# e.g. val 8069, test 9420), and a pair with an empty sentence beside others (val 13426).
SPOT_EMPTY = {
    "train": SPOT["train"] + [{"img_id": "3", "sentences": [""]}],
    "val": SPOT["val"] + [{"img_id": "8069", "sentences": [""]}, {"img_id": "13426", "sentences": [""]},
                          {"img_id": "13426", "sentences": ["the woman is gone"]}],
    "test": SPOT["test"] + [{"img_id": "9420", "sentences": [""]}, {"img_id": "8682", "sentences": [""]}],
}


@pytest.mark.needs_java
@pytest.mark.parametrize("policy", ["keep", "drop"])
def test_spot_the_diff_empty_references_kept_as_the_authors_or_left_out(tmp_path, policy):
    """keep (paper profile): the authors' ground truth scores all test pairs, those whose only sentence is
    "" included (1,270 on the real test set, 7 of them ""); drop: they are left out of every split."""
    from clip4idc.stages.evaluate import evaluate_predictions

    root, out = _spot_tree(tmp_path / "spot", SPOT_EMPTY), tmp_path / "prepared"
    with pytest.warns(UserWarning) as caught:
        summary = prepare(root, out, reader="spot_the_diff", image_size=16, empty_references=policy, progress=False)
    lines = [str(w.message) for w in caught if "empty" in str(w.message)]  # one per split, naming every pair
    what = "kept and scored against \"\"" if policy == "keep" else "left out"
    assert lines == [
        f"{root}, split train (prepare.empty_references: {policy}): 1 pair(s) whose only sentences are empty, "
        f"{what}: 3; 1 pair(s) with an empty sentence beside others, that sentence "
        f"{'kept' if policy == 'keep' else 'dropped'}",
        f"{root}, split val (prepare.empty_references: {policy}): 1 pair(s) whose only sentences are empty, "
        f"{what}: 8069; 2 pair(s) with an empty sentence beside others, that sentence "
        f"{'kept' if policy == 'keep' else 'dropped'}",
        f"{root}, split test (prepare.empty_references: {policy}): 2 pair(s) whose only sentences are empty, "
        f"{what}: 9420, 8682"]

    refs = {split: json.loads((out / "references" / f"{split}.json").read_text()) for split in ("train", "val", "test")}
    if policy == "keep":
        assert list(refs["test"]) == ["5000", "41", "9420", "8682"]
        assert refs["test"]["9420"] == [""] and refs["train"]["3"] == [""]
        assert refs["val"]["13426"] == ["", "the woman is gone"] and refs["train"]["12"][2] == ""
    else:
        assert list(refs["test"]) == ["5000", "41"] and "3" not in refs["train"] and "8069" not in refs["val"]
        assert refs["val"]["13426"] == ["the woman is gone"] and "" not in refs["train"]["12"]
    assert {s: v["pairs"] for s, v in summary["splits"].items()} == {s: len(r) for s, r in refs.items()}
    assert summary["empty_references"] == policy

    predictions = tmp_path / "predictions.json"
    predictions.write_text(json.dumps({i: "the bus is gone" for i in refs["test"]}))
    scored = evaluate_predictions(predictions, out / "references" / "test.json", tmp_path / "metrics.json",
                                  variant="adapt", seed=1, split="test")
    assert scored["n_pairs"] == (4 if policy == "keep" else 2)


# ----------------------------------------------------------------------------------------- Image-Editing-Request

IER = {
    "train.json": [
        {"img0": "Reddit.com_a1_a1.jpg", "img1": "Reddit.com_a1_x.jpg", "sents": ["remove the man "],
         "uid": "Reddit_1"},
        {"img0": "Reddit.com_b2_b2.png", "img1": "Reddit.com_b2_y.gif", "sents": ["make it brighter"],
         "uid": "Reddit_2"},
        # a second uid on the same image pair: kept as its own record
        {"img0": "Reddit.com_a1_a1.jpg", "img1": "Reddit.com_a1_x.jpg", "sents": ["delete the man"], "uid": "Reddit_3"},
    ],
    "valid.json": [
        {"img0": "Reddit.com_c3_c3.jpeg", "img1": "Reddit.com_c3_z.jpg",
         "sents": ["crop it", "Crop the image", "crop the image, add the effect"], "uid": "Reddit_10"},
    ],
    "test.json": [
        {"img0": "Reddit.com_d4_d4.jpg", "img1": "Reddit.com_d4_w.png",
         "sents": ["add a hat", "Insert a hat", "put a hat on him"], "uid": "Reddit_20"},
        {"img0": "Reddit.com_e5_e5.gif", "img1": "Reddit.com_e5_v.jpg",
         "sents": ["color the sky blue", "Make the sky blue", ""], "uid": "Reddit_21"},
    ],
}
_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".gif": "GIF"}


def _ier_tree(root, annotations=IER):
    for name, entries in annotations.items():
        _json(root / name, entries)
    names = dict.fromkeys(e[k] for entries in annotations.values() for e in entries for k in ("img0", "img1"))
    for n, name in enumerate(names):
        _image(root / "images" / name, _FORMATS[name[name.rindex("."):]], n)
    return root


def test_ier_records(tmp_path):
    records = read_ier(_ier_tree(tmp_path))
    assert [(r.split, r.pair_id) for r in records] == [
        ("train", "Reddit_1"), ("train", "Reddit_2"), ("train", "Reddit_3"), ("val", "Reddit_10"),
        ("test", "Reddit_20"), ("test", "Reddit_21")]
    by_id = {r.pair_id: r for r in records}
    assert by_id["Reddit_1"].references == ("remove the man",)
    assert by_id["Reddit_10"].references == ("crop it", "Crop the image", "crop the image, add the effect")
    assert by_id["Reddit_21"].references == ("color the sky blue", "Make the sky blue", "")
    assert [len(r.references) for r in records] == [1, 1, 1, 3, 3, 3]
    # two uids on one image pair stay separate records with their own group
    assert (by_id["Reddit_1"].before, by_id["Reddit_1"].after) == (by_id["Reddit_3"].before, by_id["Reddit_3"].after) \
        == ("images/Reddit.com_a1_a1.jpg", "images/Reddit.com_a1_x.jpg")
    assert (by_id["Reddit_1"].group, by_id["Reddit_3"].group) == ("Reddit_1", "Reddit_3")
    assert by_id["Reddit_2"].after == "images/Reddit.com_b2_y.gif"
    assert all(r.changed and r.change_type is None and r.group == r.pair_id for r in records)
    assert read_dataset("ier", tmp_path) == records
    assert READERS["ier"] is read_ier


def test_ier_missing_annotation_file(tmp_path):
    _ier_tree(tmp_path)
    (tmp_path / "valid.json").unlink()
    with pytest.raises(IerFormatError, match=r"annotation file valid\.json is missing"):
        read_ier(tmp_path)
    with pytest.raises(IerFormatError, match="is not a directory"):
        read_ier(tmp_path / "nowhere")


def test_ier_duplicate_uid(tmp_path):
    dup = {**IER["test.json"][0], "uid": "Reddit_2"}
    _ier_tree(tmp_path, {**IER, "test.json": IER["test.json"] + [dup]})
    with pytest.raises(IerFormatError,
                       match=r"1 duplicate uid\(s\): Reddit_2 \(train\.json entry 1 and test\.json entry 2\)"):
        read_ier(tmp_path)


def test_ier_missing_images(tmp_path):
    _ier_tree(tmp_path)
    (tmp_path / "images" / "Reddit.com_e5_v.jpg").unlink()
    (tmp_path / "images" / "Reddit.com_b2_y.gif").unlink()
    with pytest.raises(IerFormatError, match=r"2 image file\(s\) missing, e\.g\. images/Reddit\.com_b2_y\.gif, "
                                             r"images/Reddit\.com_e5_v\.jpg"):
        read_ier(tmp_path)


def test_ier_malformed_entry(tmp_path):
    _ier_tree(tmp_path)
    bad = {k: v for k, v in IER["valid.json"][0].items() if k != "img1"}
    _json(tmp_path / "valid.json", [bad])
    with pytest.raises(IerFormatError, match=r"valid\.json: entry 0 has no 'img1'"):
        read_ier(tmp_path)
    _json(tmp_path / "valid.json", {"not": "a list"})
    with pytest.raises(IerFormatError, match=r"valid\.json: expected a JSON list"):
        read_ier(tmp_path)


def test_prepare_ier(tmp_path):
    root = _ier_tree(tmp_path / "ier")
    out = tmp_path / "prepared"
    with pytest.warns(UserWarning, match=r"split test \(prepare.empty_references: drop\): 1 pair\(s\) with an empty"):
        summary = prepare(root, out, reader="ier", image_size=32, empty_references="drop", workers=1, progress=False)
    assert summary["reader"] == "ier" and summary["n_images"] == 10  # 12 names, one pair shared by 2 uids
    assert {s: v["pairs"] for s, v in summary["splits"].items()} == {"train": 3, "val": 1, "test": 2}
    images = np.load(out / "images.npy")
    assert images.shape == (10, 32, 32, 3) and images.dtype == np.uint8
    for split, ids in {"train": ["Reddit_1", "Reddit_2", "Reddit_3"], "val": ["Reddit_10"],
                       "test": ["Reddit_20", "Reddit_21"]}.items():
        rows = [json.loads(line) for line in (out / "manifest" / f"{split}.jsonl").read_text().splitlines()]
        assert [m["pair_id"] for m in rows] == ids and all(m["split"] == split for m in rows)
        refs = json.loads((out / "references" / f"{split}.json").read_text())
        assert list(refs) == ids
    train = [json.loads(line) for line in (out / "manifest" / "train.jsonl").read_text().splitlines()]
    assert train[0]["before_index"] == train[2]["before_index"] and train[0]["after_index"] == train[2]["after_index"]
