"""Small helpers the readers share: examples in error messages, JSON entry lists, image checks."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

EXAMPLES = 5  # names quoted in an error message


_TYPES = {"str": lambda v: isinstance(v, str),
          "list[str]": lambda v: isinstance(v, list) and all(isinstance(s, str) for s in v)}


def annotation_file(root: Path, rel: str, error: type[ValueError], dataset: str, expected: Iterable[str],
                    origin: str) -> Path:
    """`root/rel`, or `error` naming the dataset, the missing file, every file expected and where they come from."""
    path = root / rel
    if not path.is_file():
        raise error(f"{dataset} root {root}: annotation file {rel} is missing (expected {', '.join(expected)}, "
                    f"from {origin})")
    return path


def examples(items: Iterable[Any]) -> str:
    """The first few items, comma-separated, with a count of the rest."""
    items = list(items)
    more = f", ... ({len(items) - EXAMPLES} more)" if len(items) > EXAMPLES else ""
    return ", ".join(str(i) for i in items[:EXAMPLES]) + more


def load_entries(path: Path, fields: dict[str, str], error: type[ValueError]) -> list[dict[str, Any]]:
    """`path` as a JSON list of objects, each with every key of `fields` (key -> "str" | "list[str]").

    Extra keys are allowed; a problem raises `error` naming the file and, for a bad entry, its index.
    """
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise error(f"{path} is not valid JSON: {err}") from err
    shape = "{" + ", ".join(f'"{k}": {t}' for k, t in fields.items()) + "}"
    if not isinstance(raw, list):
        raise error(f"{path}: expected a JSON list of {shape}, got {type(raw).__name__}")
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict):
            raise error(f"{path}: entry {i} is a {type(entry).__name__}, expected an object {shape}")
        for key, kind in fields.items():
            if key not in entry:
                raise error(f"{path}: entry {i} has no {key!r} (expected {shape})")
            if not _TYPES[kind](entry[key]):
                raise error(f"{path}: entry {i}: {key!r} must be a {kind}, got {entry[key]!r:.80}")
    return raw


def strip_sentences(sentences: list[str]) -> tuple[str, ...]:
    """Sentences stripped of surrounding whitespace, order kept. Empty ones stay: what to do with them
    is `prepare.empty_references`' decision, not the reader's."""
    return tuple(s.strip() for s in sentences)


def check_images(root: Path, paths: Iterable[str], error: type[ValueError], dataset: str) -> None:
    """Raise `error` with the count and first few paths if any of `paths` (relative to root) is missing.

    One directory listing per folder rather than a stat call per image (datasets hold ~10^4-10^5 images).
    """
    listings: dict[str, set[str] | None] = {}
    missing = []
    for rel in dict.fromkeys(paths):
        folder, _, name = rel.rpartition("/")
        if folder not in listings:
            d = root / folder
            listings[folder] = set(os.listdir(d)) if d.is_dir() else None
        if listings[folder] is None or name not in listings[folder]:
            missing.append(rel)
    if missing:
        absent = [f"{f}/" for f, names in listings.items() if names is None]
        note = f" (folder(s) missing: {', '.join(absent)})" if absent else ""
        raise error(f"{dataset} root {root}: {len(missing)} image file(s) missing{note}, e.g. {examples(missing)}")
