"""Reader for CLEVR-Change's on-disk format (Park et al., ICCV 2019; PAPER.md §7).

Each scene n of `splits.json` gives two pairs that share the group "%06d" % n:
- the change pair "%06d.png": before `images/CLEVR_default_%06d.png`, after
  `sc_images/CLEVR_semantic_%06d.png`, the scene's change captions, its type from `type_mapping.json`;
- the distractor pair "%06d.png_n": the same before, after `nsc_images/CLEVR_nonsemantic_%06d.png`
  (viewpoint / lighting only), the scene's no-change captions.
These ids are the ones CLEVR-Change evaluation uses (the "Total" setting scores both).
The embedded synthetic dataset is written in this format and read by this reader too.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..records import CHANGE_TYPES, SPLITS, PairRecord
from ...errors import DatasetFormatError
from ._common import check_images, examples as _examples

REQUIRED_FILES = ("splits.json", "change_captions.json", "no_change_captions.json", "type_mapping.json")
IMAGE_DIRS = {"before": ("images", "CLEVR_default_{:06d}.png"),
              "change": ("sc_images", "CLEVR_semantic_{:06d}.png"),
              "distractor": ("nsc_images", "CLEVR_nonsemantic_{:06d}.png")}


class ClevrChangeFormatError(DatasetFormatError):
    """The directory is not a well-formed CLEVR-Change dataset."""


def _load(root: Path, name: str) -> Any:
    path = root / name
    if not path.is_file():
        raise ClevrChangeFormatError(f"CLEVR-Change root {root}: required file {name} is missing "
                                     f"(expected {', '.join(REQUIRED_FILES)})")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ClevrChangeFormatError(f"{path} is not valid JSON: {err}") from err


def _splits(root: Path, raw: Any) -> dict[str, list[int]]:
    where = root / "splits.json"
    if not isinstance(raw, dict):
        raise ClevrChangeFormatError(f"{where}: expected an object {{'train': [int], 'val': [int], 'test': [int]}}")
    missing = [s for s in SPLITS if s not in raw]
    unknown = [s for s in raw if s not in SPLITS]
    if missing or unknown:
        raise ClevrChangeFormatError(f"{where}: expected exactly the keys {list(SPLITS)}; "
                                     f"missing {missing}, unexpected {unknown}")
    splits = {}
    for split in SPLITS:
        scenes = raw[split]
        if not isinstance(scenes, list) or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0
                                                   for n in scenes):
            raise ClevrChangeFormatError(f"{where}: split {split!r} must be a list of scene numbers (ints >= 0)")
        splits[split] = sorted(scenes)
    seen: dict[int, str] = {}
    clashes = []
    for split in SPLITS:
        for n in splits[split]:
            if n in seen:
                clashes.append(f"{n} ({seen[n]} and {split})")
            seen[n] = split
    if clashes:
        raise ClevrChangeFormatError(f"{where}: {len(clashes)} scene(s) listed more than once: {_examples(clashes)}")
    return splits


def _captions(root: Path, name: str, raw: Any, scenes: list[int]) -> dict[int, tuple[str, ...]]:
    where = root / name
    if not isinstance(raw, dict):
        raise ClevrChangeFormatError(f"{where}: expected an object \"CLEVR_default_%06d.png\" -> [captions]")
    out, missing = {}, []
    for n in scenes:
        caps = raw.get(f"CLEVR_default_{n:06d}.png")
        if caps is None or caps == []:
            missing.append(f"CLEVR_default_{n:06d}.png")
            continue
        if not isinstance(caps, list) or not all(isinstance(c, str) for c in caps):
            raise ClevrChangeFormatError(f"{where}: CLEVR_default_{n:06d}.png must map to a list of strings")
        # Verbatim: references are scored as distributed (an empty one is prepare.empty_references' matter).
        out[n] = tuple(caps)
    if missing:
        raise ClevrChangeFormatError(f"{where}: {len(missing)} scene(s) of splits.json have no captions: "
                                     f"{_examples(missing)}")
    return out


def _types(root: Path, raw: Any) -> dict[int, str]:
    where = root / "type_mapping.json"
    if not isinstance(raw, dict):
        raise ClevrChangeFormatError(f"{where}: expected an object {{change type: [\"%06d.png\", ...]}}")
    unknown = [t for t in raw if t not in CHANGE_TYPES]
    if unknown:
        raise ClevrChangeFormatError(f"{where}: unknown change type(s) {unknown}; expected {list(CHANGE_TYPES)}")
    types: dict[int, str] = {}
    for change_type, names in raw.items():
        if not isinstance(names, list):
            raise ClevrChangeFormatError(f"{where}: {change_type!r} must map to a list of \"%06d.png\" names")
        for name in names:
            stem = name[:-4] if isinstance(name, str) and name.endswith(".png") else ""
            if not stem.isdigit():
                raise ClevrChangeFormatError(f"{where}: {change_type!r} lists {name!r}; expected \"%06d.png\"")
            n = int(stem)
            if n in types and types[n] != change_type:
                raise ClevrChangeFormatError(f"{where}: scene {name} has two change types, "
                                             f"{types[n]!r} and {change_type!r}")
            types[n] = change_type
    return types


def read_clevr_change(root: str | os.PathLike) -> list[PairRecord]:
    """All pairs of a CLEVR-Change root, by split (train, val, test), then scene, change pair first."""
    root = Path(root)
    if not root.is_dir():
        raise ClevrChangeFormatError(f"CLEVR-Change root {root} is not a directory")
    raw = {name: _load(root, name) for name in REQUIRED_FILES}
    splits = _splits(root, raw["splits.json"])
    all_scenes = [n for split in SPLITS for n in splits[split]]
    change = _captions(root, "change_captions.json", raw["change_captions.json"], all_scenes)
    no_change = _captions(root, "no_change_captions.json", raw["no_change_captions.json"], all_scenes)
    types = _types(root, raw["type_mapping.json"])
    # Folder by folder, so the first missing files quoted are of one kind.
    paths = (f"{folder}/{pattern.format(n)}" for folder, pattern in IMAGE_DIRS.values() for n in all_scenes)
    check_images(root, paths, ClevrChangeFormatError, "CLEVR-Change")

    before_dir, before_name = IMAGE_DIRS["before"]
    change_dir, change_name = IMAGE_DIRS["change"]
    distractor_dir, distractor_name = IMAGE_DIRS["distractor"]
    records = []
    for split in SPLITS:
        for n in splits[split]:
            before = f"{before_dir}/{before_name.format(n)}"
            group = f"{n:06d}"
            records.append(PairRecord(pair_id=f"{n:06d}.png", split=split, before=before,
                                      after=f"{change_dir}/{change_name.format(n)}", references=change[n],
                                      changed=True, change_type=types.get(n), group=group))
            records.append(PairRecord(pair_id=f"{n:06d}.png_n", split=split, before=before,
                                      after=f"{distractor_dir}/{distractor_name.format(n)}",
                                      references=no_change[n], changed=False, change_type=None, group=group))
    return records
