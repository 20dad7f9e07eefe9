"""A prepared directory (written by prepare.py), read: manifests, references, scene descriptions and the
image cache, memory-mapped.

Kept apart from the torch datasets (dataset.py) so that the stages which only read manifests and references
(evaluate, baseline, report) start without importing torch and open_clip: that import cost a scoring job
more than ten seconds of its ~40 (bench/README.md). `image()` imports torch when first called.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .records import SPLITS, PairRecord

if TYPE_CHECKING:
    import torch

_REQUIRED = ("images.npy", "images.json", "summary.json")


class Prepared:
    """A prepared directory: manifests, references and the image cache (memory-mapped, lazily)."""

    def __init__(self, prepared_dir: str | Path):
        self.root = Path(prepared_dir)
        missing = [name for name in _REQUIRED if not (self.root / name).is_file()]
        if missing:
            raise FileNotFoundError(f"{self.root} is not a prepared directory (run `clip4idc prepare`): "
                                    f"missing {', '.join(missing)}")
        self.summary = json.loads((self.root / "summary.json").read_text(encoding="utf-8"))
        self.paths: list[str] = json.loads((self.root / "images.json").read_text(encoding="utf-8"))
        self._row = {p: i for i, p in enumerate(self.paths)}
        self._images: np.ndarray | None = None
        self._manifests: dict[str, list[dict]] = {}
        self._references: dict[str, dict[str, list[str]]] = {}
        self._descriptions: dict[str, str] | None = None

    def __getstate__(self) -> dict:
        # DataLoader workers re-open the memory map; pickling it would copy the whole cache.
        return {**self.__dict__, "_images": None}

    @property
    def images(self) -> np.ndarray:
        if self._images is None:
            self._images = np.load(self.root / "images.npy", mmap_mode="r")
            if self._images.shape[0] != len(self.paths):
                raise ValueError(f"{self.root}: images.npy has {self._images.shape[0]} rows but images.json "
                                 f"lists {len(self.paths)} paths")
        return self._images

    @property
    def image_size(self) -> int:
        return int(self.summary["image_size"])

    def _check_split(self, split: str) -> None:
        if split not in SPLITS:
            raise ValueError(f"split {split!r} is not one of {SPLITS}")

    def manifest(self, split: str) -> list[dict]:
        """The pairs of a split: `PairRecord.to_dict()` plus `before_index` / `after_index`."""
        self._check_split(split)
        if split not in self._manifests:
            path = self.root / "manifest" / f"{split}.jsonl"
            if not path.is_file():
                raise FileNotFoundError(f"{self.root} is not a prepared directory: missing manifest/{split}.jsonl")
            with path.open(encoding="utf-8") as f:
                self._manifests[split] = [json.loads(line) for line in f if line.strip()]
        return self._manifests[split]

    def records(self, split: str) -> list[PairRecord]:
        fields = PairRecord.__dataclass_fields__
        return [PairRecord.from_dict({k: v for k, v in m.items() if k in fields}) for m in self.manifest(split)]

    def references(self, split: str) -> dict[str, list[str]]:
        """{pair_id: [captions]} of a split, for scoring."""
        self._check_split(split)
        if split not in self._references:
            path = self.root / "references" / f"{split}.json"
            if not path.is_file():
                raise FileNotFoundError(f"{self.root} is not a prepared directory: missing references/{split}.json")
            self._references[split] = json.loads(path.read_text(encoding="utf-8"))
        return self._references[split]

    def descriptions(self) -> dict[str, str]:
        """{image path: what it shows}; only the embedded dataset has them."""
        if self._descriptions is None:
            path = self.root / "scene_descriptions.json"
            if not path.is_file():
                raise FileNotFoundError(f"{self.root} has no scene_descriptions.json (the dataset root had none; "
                                        f"only the embedded synthetic dataset describes its images)")
            self._descriptions = json.loads(path.read_text(encoding="utf-8"))
        return self._descriptions

    def index_of(self, path: str) -> int:
        """Row of an image (path relative to the dataset root) in the cache."""
        try:
            return self._row[path]
        except KeyError:
            raise KeyError(f"image {path!r} is not in the cache of {self.root}") from None

    def image(self, index: int) -> "torch.Tensor":
        """Row `index` as a float tensor [3, S, S], normalised with CLIP's mean and std (`dataset.to_tensor`)."""
        from .dataset import to_tensor  # torch only where pixels become tensors (module docstring)
        return to_tensor(self.images[index])
