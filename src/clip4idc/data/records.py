"""The one record type every on-disk format is read into.

Readers know formats (CLEVR-Change, Spot-the-Diff, Image-Editing-Request); everything
downstream only sees `PairRecord`s (ARCHITECTURE.md, property 3).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

SPLITS = ("train", "val", "test")
CHANGE_TYPES = ("color", "material", "add", "drop", "move")


@dataclass(frozen=True)
class PairRecord:
    pair_id: str                 # evaluation id: CLEVR-Change "%06d.png" (change) / "%06d.png_n" (distractor)
    split: str                   # one of SPLITS
    before: str                  # before image, path relative to the dataset root
    after: str                   # after image, path relative to the dataset root
    references: tuple[str, ...]  # every reference caption of this pair
    changed: bool                # True: a semantic change; False: no-change (distractor) pair
    change_type: str | None      # one of CHANGE_TYPES for typed change pairs, else None
    group: str                   # pairs of one scene share a group (CLEVR: the change and distractor pair)

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ValueError(f"pair {self.pair_id}: split {self.split!r} is not one of {SPLITS}")
        if self.change_type is not None and self.change_type not in CHANGE_TYPES:
            raise ValueError(f"pair {self.pair_id}: change type {self.change_type!r} is not one of {CHANGE_TYPES}")
        if not self.references:
            raise ValueError(f"pair {self.pair_id}: no reference captions")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["references"] = list(self.references)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PairRecord":
        return cls(**{**d, "references": tuple(d["references"])})
