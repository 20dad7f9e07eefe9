"""Torch datasets over a prepared directory (written by prepare.py, read by prepared.Prepared). Items are
dicts, never tuples.

- `PretrainDataset`: single images with scene descriptions (the tiny CLIP's pretraining), and
  `SceneBatches`, batches of a scene's unchanged and changed views;
- `AdaptDataset`: one item per (change pair, caption), before image randomly swapped with the
  distractor (stage 1, PAPER.md §3);
- `PairDataset`: one item per pair, for retrieval evaluation and decoding;
- `CaptionDataset`: one item per scene (group) with all its pairs and a random caption each
  (stage 2, PAPER.md §4: the change and no-change losses of a scene are summed);
- `collate`: the one batch function for all of them;
- `to_tensor` / `image_tensor`: cached pixels / an image file → the tensor the vision tower takes,
  the one definition every item above and `clip4idc caption` use.
Random choices come from generators seeded by (seed, epoch, index), so an item is the same
whichever DataLoader worker builds it, and the same on resume.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from .images import load_image
from .prepared import Prepared
from .records import PairRecord

try:  # one source of truth for CLIP's normalisation where open_clip is installed
    from open_clip.constants import OPENAI_DATASET_MEAN as CLIP_MEAN, OPENAI_DATASET_STD as CLIP_STD
except ImportError:  # pragma: no cover
    CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
    CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

_MEAN = torch.tensor(CLIP_MEAN).view(3, 1, 1)
_STD = torch.tensor(CLIP_STD).view(3, 1, 1)


def to_tensor(pixels: np.ndarray) -> torch.Tensor:
    """uint8 pixels [S, S, 3] (a row of the image cache, `images.load_image`) → float [3, S, S],
    normalised with CLIP's mean and std."""
    pixels = torch.from_numpy(np.array(pixels))  # a writable copy (the cache is a read-only memory map)
    return (pixels.permute(2, 0, 1).float().div_(255.0) - _MEAN) / _STD


def image_tensor(path: str | Path, size: int) -> torch.Tensor:
    """An image file as the model takes it: exactly the tensor `Prepared.image` gives for the same
    file prepared at this size."""
    return to_tensor(load_image(path, size))


class PairTokens:
    """A frozen pair encoder's output for every pair of a split, computed once (train/finetune.py).

    When fine-tuning keeps the whole pair encoder frozen, its tokens for a pair never change, so
    they stand in for the images: `PairDataset` and `CaptionDataset` given a `PairTokens` yield the
    before half (first T tokens) and the after half of a pair's [2T, D] tokens under "before" and
    "after", where they would yield images.
    """

    def __init__(self, pair_ids: list[str], tokens: torch.Tensor):
        if tokens.ndim != 3 or tokens.shape[0] != len(pair_ids) or tokens.shape[1] % 2:
            raise ValueError(f"expected tokens [pairs={len(pair_ids)}, 2T, D], got {tuple(tokens.shape)}")
        self.tokens = tokens
        self._row = {pair_id: i for i, pair_id in enumerate(pair_ids)}

    def halves(self, pair_id: str) -> tuple[torch.Tensor, torch.Tensor]:
        try:
            pair = self.tokens[self._row[pair_id]]
        except KeyError:
            raise KeyError(f"pair {pair_id!r} has no precomputed tokens") from None
        half = pair.shape[0] // 2
        return pair[:half], pair[half:]


def _rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, epoch, index])


class PretrainDataset(Dataset):
    """Every distinct image of a split's pairs that has a description → {"image", "text"}."""

    def __init__(self, prepared: Prepared, split: str = "train"):
        self.prepared = prepared
        descriptions = prepared.descriptions()
        rows = dict.fromkeys(i for m in prepared.manifest(split) for i in (m["before_index"], m["after_index"]))
        self.items = [(i, descriptions[prepared.paths[i]]) for i in rows if prepared.paths[i] in descriptions]
        if not self.items:
            raise ValueError(f"{prepared.root}: no image of split {split!r} has a scene description")
        # Per scene: the items of its unchanged views (before image, distractor) and of its changed view.
        item_of = {row: i for i, (row, _) in enumerate(self.items)}
        groups: dict[str, dict[str, list[int]]] = {}
        for m in prepared.manifest(split):
            views = groups.setdefault(m["group"], {"unchanged": [], "changed": []})
            for row, changed in ((m["before_index"], False), (m["after_index"], m["changed"])):
                if row in item_of and item_of[row] not in views["unchanged"] + views["changed"]:
                    views["changed" if changed else "unchanged"].append(item_of[row])
        self.scenes = [(v["unchanged"], v["changed"][0]) for v in groups.values() if v["unchanged"] and v["changed"]]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        row, text = self.items[index]
        return {"image": self.prepared.image(row), "text": text}


class SceneBatches(Sampler[list[int]]):
    """Batches of `PretrainDataset` items that hold, for each of `batch_size // 2` scenes, one unchanged view
    (the before image or the distractor, at random) and the changed view: every description then has a
    near-twin in its batch that differs in one object, a hard negative for the contrastive loss. The two
    unchanged views of a scene never share a batch (their descriptions say the same)."""

    def __init__(self, scenes: list[tuple[list[int], int]], batch_size: int, generator: torch.Generator):
        if batch_size < 2 or batch_size % 2:
            raise ValueError(f"scene batches need an even batch size of at least 2, got {batch_size}")
        if len(scenes) < batch_size // 2:
            raise ValueError(f"{len(scenes)} scenes with a change are fewer than one batch of {batch_size // 2}")
        self.scenes, self.per_batch, self.generator = scenes, batch_size // 2, generator

    def __len__(self) -> int:
        return len(self.scenes) // self.per_batch   # the last, partial batch is dropped

    def __iter__(self) -> Iterator[list[int]]:
        order = torch.randperm(len(self.scenes), generator=self.generator).tolist()
        picks = torch.randint(0, 2 ** 31, (len(order),), generator=self.generator).tolist()
        for b in range(len(self)):
            batch = []
            for scene, pick in zip(order[b * self.per_batch:(b + 1) * self.per_batch],
                                   picks[b * self.per_batch:(b + 1) * self.per_batch]):
                unchanged, changed = self.scenes[scene]
                batch += [unchanged[pick % len(unchanged)], changed]
            yield batch


class AdaptDataset(Dataset):
    """One item per (change pair, caption) → {"before", "after", "text", "pair"}.

    With probability `distractor_swap_p` the before image is replaced by the after image of the
    no-change pair of the same group (the distractor, PAPER.md §3), so the pair encoder learns
    that a viewpoint/lighting difference is not the change the caption describes.
    """

    def __init__(self, prepared: Prepared, split: str, *, distractor_swap_p: float, seed: int):
        if not 0.0 <= distractor_swap_p <= 1.0:
            raise ValueError(f"distractor_swap_p must be in [0, 1], got {distractor_swap_p}")
        self.prepared, self.p, self.seed, self.epoch = prepared, float(distractor_swap_p), seed, 0
        manifest = prepared.manifest(split)
        self.pairs = [m for m in manifest if m["changed"]]
        distractor = {m["group"]: m["after_index"] for m in manifest if not m["changed"]}
        self.distractor = [distractor.get(m["group"]) for m in self.pairs]
        lacking = [m["pair_id"] for m, d in zip(self.pairs, self.distractor) if d is None]
        if self.p > 0 and lacking:
            raise ValueError(f"distractor_swap_p={self.p} but {len(lacking)} change pair(s) of split {split!r} "
                             f"have no no-change pair in their group (e.g. {lacking[:3]}); set it to 0 for this dataset")
        self.items = [(p, c) for p, m in enumerate(self.pairs) for c in range(len(m["references"]))]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.items)

    def swapped(self, index: int) -> bool:
        """Whether item `index` shows the distractor as its before image this epoch."""
        return self.p > 0 and bool(_rng(self.seed, self.epoch, index).random() < self.p)

    def __getitem__(self, index: int) -> dict[str, Any]:
        p, c = self.items[index]
        pair = self.pairs[p]
        before = self.distractor[p] if self.swapped(index) else pair["before_index"]
        return {"before": self.prepared.image(before), "after": self.prepared.image(pair["after_index"]),
                "text": pair["references"][c], "pair": p}


def _inputs(prepared: Prepared, tokens: PairTokens | None, m: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """What a model takes for pair `m`: its two images, or the halves of its precomputed tokens."""
    if tokens is not None:
        return tokens.halves(m["pair_id"])
    return prepared.image(m["before_index"]), prepared.image(m["after_index"])


class PairDataset(Dataset):
    """One item per pair of a split (optionally only change or only no-change pairs)."""

    def __init__(self, prepared: Prepared, split: str, *, changed: bool | None = None,
                 tokens: PairTokens | None = None):
        self.prepared, self.tokens = prepared, tokens
        self.manifest = [m for m in prepared.manifest(split) if changed is None or m["changed"] == changed]
        fields = PairRecord.__dataclass_fields__
        self.records = [PairRecord.from_dict({k: v for k, v in m.items() if k in fields}) for m in self.manifest]

    def __len__(self) -> int:
        return len(self.manifest)

    def __getitem__(self, index: int) -> dict[str, Any]:
        m = self.manifest[index]
        before, after = _inputs(self.prepared, self.tokens, m)
        return {"before": before, "after": after, "pair": index, "pair_id": m["pair_id"]}

    def captions(self) -> tuple[list[str], list[int]]:
        """Every reference, flattened, with the index of its pair (multi-sentence retrieval)."""
        texts, text_pair = [], []
        for i, r in enumerate(self.records):
            texts += r.references
            text_pair += [i] * len(r.references)
        return texts, text_pair


class CaptionDataset(Dataset):
    """One item per group (scene): its k pairs, change first, each with a random reference.

    → {"before": [k,3,S,S], "after": [k,3,S,S], "text": k strings, "role": LongTensor[k]} with
    role 0 for a change pair and 1 for a no-change pair; the loss sums the roles' means.

    `no_change_p` < 1: in each epoch a scene's no-change pairs are trained on with this probability
    (drawn per scene and epoch from the seed, so a resumed or repeated run draws the same), the others
    left out of its item. The no-change loss keeps its weight (a role's mean over the tokens it has),
    on fewer pairs. A scene without a change pair keeps its pairs. 1.0 (the paper) draws nothing.
    """

    def __init__(self, prepared: Prepared, split: str, *, seed: int, tokens: PairTokens | None = None,
                 no_change_p: float = 1.0):
        if not 0.0 < no_change_p <= 1.0:
            raise ValueError(f"no_change_p must be in (0, 1], got {no_change_p}")
        self.prepared, self.seed, self.epoch, self.tokens = prepared, seed, 0, tokens
        self.no_change_p = float(no_change_p)
        groups: dict[str, list[dict]] = {}
        for m in prepared.manifest(split):
            groups.setdefault(m["group"], []).append(m)
        # Stable sort: change pairs (changed=True) first, then no-change, manifest order within each.
        self.groups = [sorted(pairs, key=lambda m: not m["changed"]) for pairs in groups.values()]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, index: int) -> dict[str, Any]:
        pairs = self.groups[index]
        rng = _rng(self.seed, self.epoch, index)
        texts = [m["references"][rng.integers(len(m["references"]))] for m in pairs]
        # Drawn after the references, so a scene keeps the same references whatever no_change_p is.
        if self.no_change_p < 1.0 and pairs[0]["changed"] and rng.random() >= self.no_change_p:
            kept = [i for i, m in enumerate(pairs) if m["changed"]]
            pairs, texts = [pairs[i] for i in kept], [texts[i] for i in kept]
        before, after = zip(*(_inputs(self.prepared, self.tokens, m) for m in pairs))
        return {"before": torch.stack(before), "after": torch.stack(after), "text": texts,
                "role": torch.tensor([0 if m["changed"] else 1 for m in pairs], dtype=torch.long)}


def collate(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """Batch a list of items from any dataset above.

    Tensors are stacked, ints become a LongTensor, strings a list. An item holding a list
    (CaptionDataset: one caption per pair of the group) is a group of pairs: its tensors already
    have a leading pair dimension and are concatenated, and its lists joined, so a batch of
    groups is a flat batch of pairs.
    """
    if not batch:
        raise ValueError("collate: empty batch")
    keys = list(batch[0])
    if any(list(item) != keys for item in batch):
        raise ValueError(f"collate: items have different keys: {sorted({tuple(item) for item in batch})}")
    grouped = any(isinstance(v, list) for v in batch[0].values())
    out: dict[str, Any] = {}
    for key in keys:
        values = [item[key] for item in batch]
        first = values[0]
        if isinstance(first, torch.Tensor):
            out[key] = torch.cat(values) if grouped else torch.stack(values)
        elif isinstance(first, list):
            out[key] = [v for value in values for v in value]
        elif isinstance(first, bool):
            out[key] = torch.tensor(values, dtype=torch.bool)
        elif isinstance(first, int):
            out[key] = torch.tensor(values, dtype=torch.long)
        elif isinstance(first, float):
            out[key] = torch.tensor(values, dtype=torch.float32)
        elif isinstance(first, str):
            out[key] = values
        else:
            raise TypeError(f"collate: cannot batch {key!r} of type {type(first).__name__}")
    return out
