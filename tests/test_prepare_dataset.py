"""prepare() writes manifests, references and the image cache; the datasets read them as dicts."""
from __future__ import annotations

import json
import pickle
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from clip4idc.data.dataset import (CLIP_MEAN, CLIP_STD, AdaptDataset, CaptionDataset, PairDataset, Prepared,
                                   PretrainDataset, collate)
from clip4idc.data.prepare import ImageDecodeError, prepare
from clip4idc.data.readers import read_clevr_change

SIZE = 32  # the image_size of the data_prepared_dir fixture


@pytest.fixture(scope="module")
def data_prepared(data_prepared_dir):
    return Prepared(data_prepared_dir)


def test_prepared_layout(data_synth_root, data_prepared_dir):
    out = data_prepared_dir
    records = read_clevr_change(data_synth_root)
    paths = json.loads((out / "images.json").read_text())
    assert paths == list(dict.fromkeys(p for r in records for p in (r.before, r.after)))
    images = np.load(out / "images.npy")
    assert images.dtype == np.uint8 and images.shape == (len(paths), SIZE, SIZE, 3)
    for split in ("train", "val", "test"):
        lines = (out / "manifest" / f"{split}.jsonl").read_text().splitlines()
        expected = [r for r in records if r.split == split]
        assert len(lines) == len(expected)
        for line, r in zip(lines, expected):
            m = json.loads(line)
            assert {k: v for k, v in m.items() if not k.endswith("_index")} == r.to_dict()
            assert paths[m["before_index"]] == r.before and paths[m["after_index"]] == r.after
        refs = json.loads((out / "references" / f"{split}.json").read_text())
        assert refs == {r.pair_id: list(r.references) for r in expected}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["reader"] == "clevr_change" and summary["image_size"] == SIZE
    assert summary["n_images"] == len(paths) == 60  # 20 scenes x (before, change, distractor)
    assert summary["splits"]["train"] == {"pairs": 20, "change_pairs": 10, "no_change_pairs": 10, "references": 50}
    assert (out / "scene_descriptions.json").read_bytes() == (data_synth_root / "scene_descriptions.json").read_bytes()


def test_cache_row_is_a_plain_bicubic_resize(data_synth_root, data_prepared):
    for row in (0, 7, len(data_prepared.paths) - 1):
        path = data_prepared.paths[row]
        with Image.open(data_synth_root / path) as im:
            fresh = np.asarray(im.convert("RGB").resize((SIZE, SIZE), Image.Resampling.BICUBIC))
        assert np.array_equal(data_prepared.images[row], fresh)
        assert data_prepared.index_of(path) == row
        # image() is the same row, normalised with CLIP's mean and std
        x = data_prepared.image(row)
        assert x.shape == (3, SIZE, SIZE) and x.dtype == torch.float32
        back = x * torch.tensor(CLIP_STD).view(3, 1, 1) + torch.tensor(CLIP_MEAN).view(3, 1, 1)
        assert torch.allclose(back, torch.from_numpy(fresh.copy()).permute(2, 0, 1).float() / 255, atol=1e-5)


def test_parallel_prepare_is_identical(data_synth_root, data_prepared_dir, tmp_path):
    summary = prepare(data_synth_root, tmp_path / "p2", reader="clevr_change", image_size=SIZE,
                      empty_references="drop", workers=2, progress=False)
    assert summary == json.loads((data_prepared_dir / "summary.json").read_text())
    assert np.array_equal(np.load(tmp_path / "p2" / "images.npy"), np.load(data_prepared_dir / "images.npy"))


@pytest.mark.parametrize("workers", [1, 2])
def test_corrupt_image_is_named_and_nothing_is_written(data_synth_root, tmp_path, workers):
    root = shutil.copytree(data_synth_root, tmp_path / "root")
    bad = root / "sc_images" / "CLEVR_semantic_000005.png"
    bad.write_bytes(bad.read_bytes()[:60])  # a truncated PNG
    (root / "images" / "CLEVR_default_000011.png").write_bytes(b"not a png")
    with pytest.raises(ImageDecodeError, match="2 image") as err:
        prepare(root, tmp_path / "out", reader="clevr_change", image_size=SIZE, empty_references="drop",
                workers=workers, progress=False)
    assert "sc_images/CLEVR_semantic_000005.png" in str(err.value)
    assert "images/CLEVR_default_000011.png" in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["root"]  # no out, no temporary sibling


def test_not_a_prepared_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing images.npy"):
        Prepared(tmp_path)


def test_pickling_does_not_copy_the_cache(data_prepared):
    data_prepared.image(0)  # opens the memory map
    clone = pickle.loads(pickle.dumps(data_prepared))
    assert clone._images is None and torch.equal(clone.image(3), data_prepared.image(3))


def test_pretrain_dataset(data_prepared):
    ds = PretrainDataset(data_prepared, "train")
    descriptions = data_prepared.descriptions()
    assert len(ds) == 30  # 10 train scenes x 3 distinct images
    item = ds[0]
    assert item["text"] == descriptions[data_prepared.paths[ds.items[0][0]]]
    batch = collate([ds[0], ds[1]])
    assert batch["image"].shape == (2, 3, SIZE, SIZE) and len(batch["text"]) == 2


def test_scene_batches_pair_an_unchanged_view_with_the_changed_view_of_each_scene(data_prepared):
    from clip4idc.data.dataset import SceneBatches
    ds = PretrainDataset(data_prepared, "train")
    manifest = data_prepared.manifest("train")
    path = {i: data_prepared.paths[row] for i, (row, _) in enumerate(ds.items)}
    assert len(ds.scenes) == 10
    for unchanged, changed in ds.scenes:   # CLEVR-Change layout: default + nonsemantic, then semantic
        assert sorted(path[i].split("/")[0] for i in unchanged) == ["images", "nsc_images"]
        assert path[changed].startswith("sc_images/")
    batches = list(SceneBatches(ds.scenes, 6, torch.Generator().manual_seed(0)))
    assert len(batches) == 3 and all(len(b) == 6 for b in batches)   # 10 scenes, 3 per batch: 9 used
    changed_of = {c: u for u, c in ds.scenes}
    seen = []
    for batch in batches:
        for before, after in zip(batch[::2], batch[1::2]):
            assert before in changed_of[after]          # the two views come from one scene
        seen += batch[1::2]
    assert len(set(seen)) == 9
    assert len(manifest) == 20
    with pytest.raises(ValueError, match="even batch size"):
        SceneBatches(ds.scenes, 5, torch.Generator())


def test_adapt_dataset_uses_change_captions_only(data_prepared):
    ds = AdaptDataset(data_prepared, "train", distractor_swap_p=0.0, seed=0)
    change = [m for m in data_prepared.manifest("train") if m["changed"]]
    assert len(ds) == sum(len(m["references"]) for m in change)
    for i in range(len(ds)):
        item = ds[i]
        pair = change[item["pair"]]
        assert item["text"] in pair["references"]
        assert torch.equal(item["before"], data_prepared.image(pair["before_index"]))  # p=0: never swapped
        assert torch.equal(item["after"], data_prepared.image(pair["after_index"]))
    batch = collate([ds[0], ds[1], ds[2]])
    assert batch["before"].shape == (3, 3, SIZE, SIZE) and batch["pair"].dtype == torch.long
    assert len(batch["text"]) == 3


def test_adapt_dataset_swaps_with_the_distractor(data_prepared):
    manifest = data_prepared.manifest("train")
    distractor = {m["group"]: m["after_index"] for m in manifest if not m["changed"]}
    always = AdaptDataset(data_prepared, "train", distractor_swap_p=1.0, seed=0)
    for i in range(len(always)):
        pair = always.pairs[always[i]["pair"]]
        assert torch.equal(always[i]["before"], data_prepared.image(distractor[pair["group"]]))

    half = AdaptDataset(data_prepared, "train", distractor_swap_p=0.5, seed=0)
    draws = []
    for epoch in range(40):
        half.set_epoch(epoch)
        draws += [half.swapped(i) for i in range(len(half))]
    assert 0.4 < np.mean(draws) < 0.6
    # Deterministic from (seed, epoch, index), whoever builds the item.
    again = AdaptDataset(data_prepared, "train", distractor_swap_p=0.5, seed=0)
    again.set_epoch(39)
    assert [again.swapped(i) for i in range(len(again))] == draws[-len(half):]

    with pytest.raises(ValueError, match="distractor_swap_p must be in"):
        AdaptDataset(data_prepared, "train", distractor_swap_p=1.5, seed=0)


def test_pair_dataset_and_captions(data_prepared):
    every = PairDataset(data_prepared, "test")
    change = PairDataset(data_prepared, "test", changed=True)
    assert len(every) == 10 and len(change) == 5 and all(r.changed for r in change.records)
    item = every[1]
    assert item["pair_id"] == every.records[1].pair_id and item["pair"] == 1
    texts, text_pair = change.captions()
    assert len(texts) == len(text_pair) == sum(len(r.references) for r in change.records)
    assert all(t in change.records[p].references for t, p in zip(texts, text_pair))
    batch = collate([every[0], every[1]])
    assert batch["before"].shape == (2, 3, SIZE, SIZE) and batch["pair_id"] == [every[0]["pair_id"], every[1]["pair_id"]]


def test_caption_dataset_groups_change_and_no_change(data_prepared):
    ds = CaptionDataset(data_prepared, "train", seed=5)
    assert len(ds) == 10  # one item per scene
    refs = data_prepared.references("train")
    for i in range(len(ds)):
        item = ds[i]
        assert item["before"].shape == item["after"].shape == (2, 3, SIZE, SIZE)
        assert item["role"].tolist() == [0, 1]
        group = ds.groups[i][0]["group"]
        assert item["text"][0] in refs[f"{group}.png"]
        assert item["text"][1] in refs[f"{group}.png_n"]
        assert torch.equal(item["before"][0], item["before"][1])  # both pairs share the before image
    # Captions are drawn per epoch, deterministically.
    texts = [[ds[i]["text"] for i in range(len(ds))] for _ in range(2)]
    assert texts[0] == texts[1]
    seen = set()
    for epoch in range(10):
        ds.set_epoch(epoch)
        seen.add(ds[0]["text"][0])
    assert len(seen) > 1

    batch = collate([ds[0], ds[1], ds[2]])
    assert batch["before"].shape == batch["after"].shape == (6, 3, SIZE, SIZE)
    assert batch["role"].tolist() == [0, 1, 0, 1, 0, 1] and len(batch["text"]) == 6


def test_no_change_p_leaves_out_some_scenes_no_change_pair_per_epoch(data_prepared):
    """finetune.no_change_p: a scene's no-change pair is trained on in about that share of epochs, drawn
    from the seed; the change pair and both references stay what the full dataset gives."""
    full = CaptionDataset(data_prepared, "train", seed=5)
    half = CaptionDataset(data_prepared, "train", seed=5, no_change_p=0.5)
    again = CaptionDataset(data_prepared, "train", seed=5, no_change_p=0.5)
    kept = 0
    for epoch in range(20):
        for ds in (full, half, again):
            ds.set_epoch(epoch)
        for i in range(len(full)):
            a, b = full[i], half[i]
            assert b["role"].tolist() in ([0], [0, 1])
            n = len(b["role"])
            assert b["text"] == a["text"][:n]
            assert torch.equal(b["before"], a["before"][:n]) and torch.equal(b["after"], a["after"][:n])
            assert again[i]["text"] == b["text"]            # the same draw every time it is read
            kept += n == 2
    assert 0.35 < kept / (20 * len(full)) < 0.65           # 200 draws at p = 0.5
    # A batch may hold no no-change pair at all: that role then adds 0, not NaN, to the loss.
    from clip4idc.train.losses import token_loss
    logits, targets = torch.randn(5, 7), torch.randint(0, 7, (5,))
    only_change = token_loss(logits, targets, torch.zeros(5, dtype=torch.long), n_roles=2)
    assert torch.isclose(only_change, torch.nn.functional.cross_entropy(logits, targets))
    with pytest.raises(ValueError, match="no_change_p"):
        CaptionDataset(data_prepared, "train", seed=5, no_change_p=0.0)


def test_collate_rejects_mixed_items(data_prepared):
    with pytest.raises(ValueError, match="different keys"):
        collate([PairDataset(data_prepared, "val")[0], PretrainDataset(data_prepared, "val")[0]])
