"""The embedded dataset generator writes CLEVR-Change's layout, deterministically and atomically."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clip4idc.data import synthetic
from clip4idc.data.records import CHANGE_TYPES
from clip4idc.data.synthetic import NO_CHANGE_CAPTIONS, synthesize
from conftest import DATA_SYNTH_ARGS

TINY = dict(seed=1, n_train=4, n_val=2, n_test=2, width=60, height=40, min_objects=2, max_objects=3,
            n_change_captions=2, n_no_change_captions=2, progress=False)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _pixels(root: Path, rel: str) -> np.ndarray:
    return np.asarray(Image.open(root / rel).convert("RGB"), dtype=np.int16)


def _load(root: Path, name: str):
    return json.loads((root / name).read_text())


def test_layout_is_clevr_change(data_synth_root):
    root = data_synth_root
    n = DATA_SYNTH_ARGS["n_train"] + DATA_SYNTH_ARGS["n_val"] + DATA_SYNTH_ARGS["n_test"]
    assert sorted(p.name for p in root.iterdir()) == sorted([
        "images", "sc_images", "nsc_images", "change_captions.json", "no_change_captions.json",
        "splits.json", "type_mapping.json", "scene_descriptions.json"])
    assert sorted(p.name for p in (root / "images").iterdir()) == [f"CLEVR_default_{i:06d}.png" for i in range(n)]
    assert sorted(p.name for p in (root / "sc_images").iterdir()) == [f"CLEVR_semantic_{i:06d}.png" for i in range(n)]
    assert sorted(p.name for p in (root / "nsc_images").iterdir()) == [f"CLEVR_nonsemantic_{i:06d}.png" for i in range(n)]
    with Image.open(root / "images" / "CLEVR_default_000000.png") as im:
        assert im.size == (DATA_SYNTH_ARGS["width"], DATA_SYNTH_ARGS["height"]) and im.mode == "RGB"

    # Scenes 0..N-1: train first, then val, then test.
    splits = _load(root, "splits.json")
    assert splits == {"train": list(range(10)), "val": list(range(10, 15)), "test": list(range(15, 20))}

    keys = [f"CLEVR_default_{i:06d}.png" for i in range(n)]
    change, no_change = _load(root, "change_captions.json"), _load(root, "no_change_captions.json")
    assert sorted(change) == keys and sorted(no_change) == keys
    for caps in change.values():
        assert len(caps) == len(set(caps)) == DATA_SYNTH_ARGS["n_change_captions"]
        assert all(c == c.lower() and not c.endswith(".") for c in caps)
    for caps in no_change.values():
        assert len(caps) == len(set(caps)) == DATA_SYNTH_ARGS["n_no_change_captions"]
        assert set(caps) <= set(NO_CHANGE_CAPTIONS)

    types = _load(root, "type_mapping.json")
    assert list(types) == list(CHANGE_TYPES)
    listed = sorted(name for names in types.values() for name in names)
    assert listed == [f"{i:06d}.png" for i in range(n)]  # every scene has exactly one type
    assert all(len(names) == 4 for names in types.values())  # balanced: 20 scenes / 5 types

    descriptions = _load(root, "scene_descriptions.json")
    assert sorted(descriptions) == sorted(f"{d}/{p}_{i:06d}.png" for i in range(n) for d, p in
                                          [("images", "CLEVR_default"), ("sc_images", "CLEVR_semantic"),
                                           ("nsc_images", "CLEVR_nonsemantic")])
    assert all(d.startswith("a ") for d in descriptions.values())


def test_descriptions_fit_clip_context():
    from open_clip import get_tokenizer
    tokenizer = get_tokenizer("ViT-B-32")
    rng = np.random.default_rng(0)
    widest = [synthetic.Obj("cylinder", "small", "yellow", "metal", float(x), 0.0, 1.0) for x in range(5)]
    text = synthetic.describe(widest, rng)
    assert int((tokenizer([text])[0] != 0).sum()) <= 40  # <start> and <end> included


def test_same_seed_same_bytes_any_worker_count(tmp_path):
    synthesize(tmp_path / "a", **TINY)
    synthesize(tmp_path / "b", **{**TINY, "workers": 2})
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    synthesize(tmp_path / "c", **{**TINY, "seed": 2})
    other = _files(tmp_path / "c")
    assert other.keys() == _files(tmp_path / "a").keys()
    assert other["images/CLEVR_default_000000.png"] != _files(tmp_path / "a")["images/CLEVR_default_000000.png"]
    assert other["change_captions.json"] != _files(tmp_path / "a")["change_captions.json"]


# Words that only a caption of that change type contains.
CHANGE_WORDS = {
    "add": ("added", "newly placed", "new "),
    "drop": ("disappeared", "missing", "removed", "no longer"),
    "move": ("moved", "location"),
}


def test_captions_name_the_change(data_synth_root):
    root = data_synth_root
    change = _load(root, "change_captions.json")
    types = _load(root, "type_mapping.json")
    for change_type, names in types.items():
        assert names, f"no {change_type} scene"
        for name in names:
            for caption in change[f"CLEVR_default_{name}"]:
                words = caption.split()
                if change_type == "color":
                    # the object's old colour and the new one: two different colour words
                    assert len([w for w in words if w in synthetic.COLORS]) == 2, caption
                elif change_type == "material":
                    targets = {"metal", "metallic", "shiny", "rubber", "matte"}
                    assert words[-1] in targets and len([w for w in words if w in targets]) == 2, caption
                else:
                    assert any(w in caption for w in CHANGE_WORDS[change_type]), caption
                assert any(w in words for w in ("cube", "block", "sphere", "ball", "cylinder")), caption


def test_distractor_differs_slightly_change_locally(data_synth_root):
    root = data_synth_root
    n = 20
    for i in range(n):
        before = _pixels(root, f"images/CLEVR_default_{i:06d}.png")
        after = _pixels(root, f"sc_images/CLEVR_semantic_{i:06d}.png")
        distractor = _pixels(root, f"nsc_images/CLEVR_nonsemantic_{i:06d}.png")
        d_mean = np.abs(distractor - before).mean()
        assert 0 < d_mean < 25, f"scene {i}: distractor differs by {d_mean:.1f} on average"
        changed = (np.abs(after - before).max(axis=2) > 0)
        # A semantic change touches one or two objects' area; the rest of the image is identical.
        assert 0 < changed.mean() < 0.3, f"scene {i}: {changed.mean():.2%} of pixels changed"


def test_failure_midway_leaves_no_output(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(synthetic, "_write_text_files", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        synthesize(tmp_path / "out", **TINY)
    assert list(tmp_path.iterdir()) == []  # neither out nor its temporary sibling


@pytest.mark.parametrize("change, message", [
    ({"n_train": 0}, "n_train must be an integer >= 1"),
    ({"n_test": 2.5}, "n_test must be an integer >= 1"),
    ({"seed": -1}, "seed must be an integer >= 0"),
    ({"min_objects": 1}, "min_objects must be >= 2"),
    ({"min_objects": 4, "max_objects": 3}, r"max_objects \(3\) must be >= min_objects \(4\)"),
    ({"width": 10}, "width and height must be >= 16"),
    ({"width": 200, "height": 40}, "does not fit in height"),
    ({"n_change_captions": 0}, "n_change_captions must be in"),
    ({"n_no_change_captions": 99}, "n_no_change_captions must be in"),
    ({"workers": 0}, "workers must be >= 1"),
])
def test_bad_arguments_are_named(tmp_path, change, message):
    with pytest.raises(ValueError, match=message):
        synthesize(tmp_path / "out", **{**TINY, **change})
    assert not (tmp_path / "out").exists()


def test_too_crowded_scene_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="could not lay out a scene"):
        synthesize(tmp_path / "out", **{**TINY, "min_objects": 30, "max_objects": 30})
    assert list(tmp_path.iterdir()) == []
