"""Reader for Spot-the-Diff's on-disk format (Jhamtani & Berg-Kirkpatrick, EMNLP 2018; PAPER.md §7).

Root layout (as the download stage writes it):
- `resized_images/`: the dataset's image archive, for each pair `<img_id>.png` (before),
  `<img_id>_2.png` (after) and `<img_id>_diff.jpg` (unused here);
- `annotations/train.json`, `annotations/val.json`, `annotations/test.json`: copied from the authors'
  repository (github.com/harsh19/spot-the-diff, `data/annotations/`), each a JSON list of
  `{"img_id": "<string of digits>", "sentences": [str, ...]}`.

The same img_id can appear in several entries of one file: they are merged into one pair whose
references are all their sentences in file order (stripped), as the authors' reformat script does.
One record per img_id: pair_id = group = img_id, changed=True, no change type. An img_id in two
split files, or one without any sentence at all, is an error. Empty sentences are kept: the official
files hold pairs whose only sentence is "" (37 in train, 4 in val, 7 in test) and a few with an
empty sentence beside others; `prepare` keeps or drops them (`prepare.empty_references`).
"""
from __future__ import annotations

import os
from pathlib import Path

from ..records import SPLITS, PairRecord
from ...errors import DatasetFormatError
from ._common import annotation_file, check_images, examples, load_entries, strip_sentences

IMAGE_DIR = "resized_images"
ANNOTATION_DIR = "annotations"
FIELDS = {"img_id": "str", "sentences": "list[str]"}
ORIGIN = "github.com/harsh19/spot-the-diff data/annotations/"


class SpotTheDiffFormatError(DatasetFormatError):
    """The directory is not a well-formed Spot-the-Diff dataset."""


def read_spot_the_diff(root: str | os.PathLike) -> list[PairRecord]:
    """All pairs of a Spot-the-Diff root, by split (train, val, test), then first appearance in the file."""
    root = Path(root)
    if not root.is_dir():
        raise SpotTheDiffFormatError(f"Spot-the-Diff root {root} is not a directory "
                                     f"(expected {IMAGE_DIR}/ and {ANNOTATION_DIR}/{{train,val,test}}.json)")
    sentences: dict[str, list[str]] = {}  # img_id -> merged sentences, in split then file order
    splits_of: dict[str, list[str]] = {}  # img_id -> the split files it appears in
    for split in SPLITS:
        path = annotation_file(root, f"{ANNOTATION_DIR}/{split}.json", SpotTheDiffFormatError, "Spot-the-Diff",
                               (f"{ANNOTATION_DIR}/{s}.json" for s in SPLITS), ORIGIN)
        for entry in load_entries(path, FIELDS, SpotTheDiffFormatError):
            img_id = entry["img_id"]
            if split not in splits_of.setdefault(img_id, []):
                splits_of[img_id].append(split)
            sentences.setdefault(img_id, []).extend(entry["sentences"])
    clashes = [f"{i} ({' and '.join(f'{ANNOTATION_DIR}/{s}.json' for s in splits)})"
               for i, splits in splits_of.items() if len(splits) > 1]
    if clashes:
        raise SpotTheDiffFormatError(f"Spot-the-Diff root {root}: {len(clashes)} img_id(s) appear in more "
                                     f"than one split file: {examples(clashes)}")
    split_of = {i: splits[0] for i, splits in splits_of.items()}
    references = {img_id: strip_sentences(sents) for img_id, sents in sentences.items()}
    none = [f"{i} ({ANNOTATION_DIR}/{split_of[i]}.json)" for i, refs in references.items() if not refs]
    if none:
        raise SpotTheDiffFormatError(f"Spot-the-Diff root {root}: {len(none)} img_id(s) have no sentence at all "
                                     f"(\"sentences\": []): {examples(none)}")
    check_images(root, (f"{IMAGE_DIR}/{i}{suffix}" for i in references for suffix in (".png", "_2.png")),
                 SpotTheDiffFormatError, "Spot-the-Diff")
    return [PairRecord(pair_id=img_id, split=split_of[img_id], before=f"{IMAGE_DIR}/{img_id}.png",
                       after=f"{IMAGE_DIR}/{img_id}_2.png", references=refs, changed=True, change_type=None,
                       group=img_id)
            for img_id, refs in references.items()]
