"""Readers of on-disk dataset formats: each turns a dataset root into `PairRecord`s.

One reader per format (ARCHITECTURE.md, property 3); `prepare` picks one by name.
"""
from __future__ import annotations

import os
from typing import Callable

from ..records import PairRecord
from .clevr_change import ClevrChangeFormatError, read_clevr_change
from .ier import IerFormatError, read_ier
from .spot_the_diff import SpotTheDiffFormatError, read_spot_the_diff

READERS: dict[str, Callable[[str | os.PathLike], list[PairRecord]]] = {
    "clevr_change": read_clevr_change,
    "spot_the_diff": read_spot_the_diff,
    "ier": read_ier,
}


def read_dataset(format_name: str, root: str | os.PathLike) -> list[PairRecord]:
    """Every pair of the dataset at `root`, read by the reader registered as `format_name`."""
    if format_name not in READERS:
        raise ValueError(f"unknown dataset format {format_name!r}; known formats: {sorted(READERS)}")
    return READERS[format_name](root)


__all__ = ["READERS", "read_dataset", "read_clevr_change", "ClevrChangeFormatError", "read_spot_the_diff",
           "SpotTheDiffFormatError", "read_ier", "IerFormatError"]
