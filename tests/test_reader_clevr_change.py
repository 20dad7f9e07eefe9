"""The CLEVR-Change reader: two pairs per scene, the evaluation ids, clear errors on bad input."""
from __future__ import annotations

import json
import shutil

import pytest

from clip4idc.data.readers import READERS, ClevrChangeFormatError, read_clevr_change, read_dataset


@pytest.fixture
def data_root_copy(data_synth_root, tmp_path):
    """A private copy of the tiny dataset that a test may break."""
    return shutil.copytree(data_synth_root, tmp_path / "root")


def _load(root, name):
    return json.loads((root / name).read_text())


def _dump(root, name, obj):
    (root / name).write_text(json.dumps(obj))


def test_two_records_per_scene_in_order(data_synth_root):
    root = data_synth_root
    records = read_clevr_change(root)
    splits = _load(root, "splits.json")
    expected = [(split, n) for split in ("train", "val", "test") for n in sorted(splits[split])]
    assert len(records) == 2 * len(expected)
    for (split, n), change, distractor in zip(expected, records[0::2], records[1::2]):
        assert (change.pair_id, distractor.pair_id) == (f"{n:06d}.png", f"{n:06d}.png_n")
        assert change.split == distractor.split == split
        assert change.group == distractor.group == f"{n:06d}"
        assert change.before == distractor.before == f"images/CLEVR_default_{n:06d}.png"
        assert change.after == f"sc_images/CLEVR_semantic_{n:06d}.png"
        assert distractor.after == f"nsc_images/CLEVR_nonsemantic_{n:06d}.png"
        assert change.changed and not distractor.changed
        assert distractor.change_type is None
    for r in records:
        assert (root / r.before).is_file() and (root / r.after).is_file()


def test_types_and_references_match_the_json(data_synth_root):
    root = data_synth_root
    records = {r.pair_id: r for r in read_clevr_change(root)}
    for change_type, names in _load(root, "type_mapping.json").items():
        for name in names:
            assert records[name].change_type == change_type
    change, no_change = _load(root, "change_captions.json"), _load(root, "no_change_captions.json")
    for r in records.values():
        source = change if r.changed else no_change
        assert list(r.references) == source[f"CLEVR_default_{r.group}.png"]


def test_scene_in_no_type_list_has_no_type(data_root_copy):
    types = _load(data_root_copy, "type_mapping.json")
    dropped = types["move"].pop(0)
    _dump(data_root_copy, "type_mapping.json", types)
    record = next(r for r in read_clevr_change(data_root_copy) if r.pair_id == dropped)
    assert record.changed and record.change_type is None


def test_registry(data_synth_root):
    assert READERS["clevr_change"] is read_clevr_change
    assert read_dataset("clevr_change", data_synth_root) == read_clevr_change(data_synth_root)
    with pytest.raises(ValueError, match=r"unknown dataset format 'coco'.*clevr_change"):
        read_dataset("coco", data_synth_root)


@pytest.mark.parametrize("name", ["change_captions.json", "no_change_captions.json", "splits.json",
                                  "type_mapping.json"])
def test_missing_required_file(data_root_copy, name):
    (data_root_copy / name).unlink()
    with pytest.raises(ClevrChangeFormatError, match=name) as err:
        read_clevr_change(data_root_copy)
    assert str(data_root_copy) in str(err.value)


def test_missing_images_are_counted_and_named(data_root_copy):
    (data_root_copy / "sc_images" / "CLEVR_semantic_000003.png").unlink()
    (data_root_copy / "nsc_images" / "CLEVR_nonsemantic_000007.png").unlink()
    with pytest.raises(ClevrChangeFormatError, match="2 image file") as err:
        read_clevr_change(data_root_copy)
    assert "sc_images/CLEVR_semantic_000003.png" in str(err.value)
    assert "nsc_images/CLEVR_nonsemantic_000007.png" in str(err.value)


def test_scene_without_captions(data_root_copy):
    captions = _load(data_root_copy, "no_change_captions.json")
    del captions["CLEVR_default_000004.png"]
    _dump(data_root_copy, "no_change_captions.json", captions)
    with pytest.raises(ClevrChangeFormatError, match=r"no_change_captions\.json: 1 scene.*CLEVR_default_000004\.png"):
        read_clevr_change(data_root_copy)


def test_scene_in_two_splits(data_root_copy):
    splits = _load(data_root_copy, "splits.json")
    splits["test"].append(splits["train"][0])
    _dump(data_root_copy, "splits.json", splits)
    with pytest.raises(ClevrChangeFormatError, match=r"1 scene\(s\) listed more than once: 0 \(train and test\)"):
        read_clevr_change(data_root_copy)


def test_malformed_splits(data_root_copy):
    _dump(data_root_copy, "splits.json", {"train": [0], "valid": [1]})
    with pytest.raises(ClevrChangeFormatError, match=r"missing \['val', 'test'\], unexpected \['valid'\]"):
        read_clevr_change(data_root_copy)


def test_unknown_change_type(data_root_copy):
    types = _load(data_root_copy, "type_mapping.json")
    types["rotate"] = types.pop("move")
    _dump(data_root_copy, "type_mapping.json", types)
    with pytest.raises(ClevrChangeFormatError, match="unknown change type"):
        read_clevr_change(data_root_copy)


def test_not_a_directory(tmp_path):
    with pytest.raises(ClevrChangeFormatError, match="is not a directory"):
        read_clevr_change(tmp_path / "nowhere")
