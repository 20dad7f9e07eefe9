"""Reader for Image-Editing-Request's on-disk format (Tan et al., ACL 2019; PAPER.md §7).

Root layout (as the download stage writes it):
- `images/`: every image file the annotations name (mostly .jpg, some .png / .gif / .jpeg);
- `train.json`, `valid.json`, `test.json`: copied from github.com/airsplay/VisualRelationships
  (`dataset/adobe/`), each a JSON list of
  `{"img0": before file name, "img1": after file name, "sents": [str, ...], "uid": str}`.
  The split named `valid` is our split `val`.

One record per uid (evaluation is per uid; several uids may share an image pair and stay separate):
pair_id = group = uid, before `images/<img0>`, after `images/<img1>`, references = sents (stripped;
train has 1 per uid, valid/test 3, not enforced), changed=True, no change type. A uid seen twice
(within or across files), or one without any sentence, is an error. Empty sentences are kept for
`prepare` to keep or drop (`prepare.empty_references`).
"""
from __future__ import annotations

import os
from pathlib import Path

from ..records import PairRecord
from ...errors import DatasetFormatError
from ._common import annotation_file, check_images, examples, load_entries, strip_sentences

IMAGE_DIR = "images"
SPLIT_FILES = {"train": "train.json", "val": "valid.json", "test": "test.json"}  # our split -> file
FIELDS = {"img0": "str", "img1": "str", "sents": "list[str]", "uid": "str"}
ORIGIN = "github.com/airsplay/VisualRelationships dataset/adobe/"


class IerFormatError(DatasetFormatError):
    """The directory is not a well-formed Image-Editing-Request dataset."""


def read_ier(root: str | os.PathLike) -> list[PairRecord]:
    """All pairs (one per uid) of an IER root, by split (train, val, test), then order in the file."""
    root = Path(root)
    if not root.is_dir():
        raise IerFormatError(f"Image-Editing-Request root {root} is not a directory "
                             f"(expected {IMAGE_DIR}/ and {', '.join(SPLIT_FILES.values())})")
    records, seen, duplicates, empty = [], {}, [], []
    for split, name in SPLIT_FILES.items():
        path = annotation_file(root, name, IerFormatError, "Image-Editing-Request", SPLIT_FILES.values(), ORIGIN)
        for i, entry in enumerate(load_entries(path, FIELDS, IerFormatError)):
            uid, where = entry["uid"], f"{name} entry {i}"
            if uid in seen:
                duplicates.append(f"{uid} ({seen[uid]} and {where})")
                continue
            seen[uid] = where
            references = strip_sentences(entry["sents"])
            if not references:
                empty.append(f"{uid} ({where})")
                continue
            records.append(PairRecord(pair_id=uid, split=split, before=f"{IMAGE_DIR}/{entry['img0']}",
                                      after=f"{IMAGE_DIR}/{entry['img1']}", references=references,
                                      changed=True, change_type=None, group=uid))
    if duplicates:
        raise IerFormatError(f"Image-Editing-Request root {root}: {len(duplicates)} duplicate uid(s): "
                             f"{examples(duplicates)}")
    if empty:
        raise IerFormatError(f"Image-Editing-Request root {root}: {len(empty)} uid(s) have no sentence at all "
                             f"(\"sents\": []): {examples(empty)}")
    check_images(root, (p for r in records for p in (r.before, r.after)), IerFormatError, "Image-Editing-Request")
    return records
