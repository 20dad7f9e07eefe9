"""Records → what training reads fast: per-split manifests, reference files and one image cache.

Layout of a prepared directory (written whole or not at all):
- `manifest/{split}.jsonl`: one pair per line, `PairRecord.to_dict()` plus `before_index` and
  `after_index`, rows of the image cache;
- `references/{split}.json`: `{pair_id: [captions]}`, every reference, for scoring;
- `images.npy`: uint8 `[n_images, S, S, 3]`, every image any pair uses, once, resized straight to
  S×S (bicubic, no crop, RGB: PAPER.md §2; `images.load_image`), so training never decodes a PNG;
  `images.json`: the relative path of each row;
- `summary.json`: counts per split, image size, number of images, reader;
- `scene_descriptions.json`, copied when the dataset root has one (the embedded dataset), so the
  directory is self-contained for pretraining.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import threading
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from itertools import repeat
from pathlib import Path

import numpy as np
from numpy.lib.format import open_memmap
from tqdm import tqdm

from ..errors import ImageDecodeError
from ..io import atomic_path, process_running
from .images import load_image
from .readers import read_dataset
from .readers._common import examples
from .records import SPLITS, PairRecord

_CHUNK = 64      # images per worker task
_EXAMPLES = 5    # file names quoted in an error message


def _load_chunk(root: str, paths: list[str], size: int) -> tuple[np.ndarray, list[str]]:
    """Decode a chunk; failures are returned (not raised) so one error message can list them all."""
    out = np.zeros((len(paths), size, size, 3), dtype=np.uint8)
    failures = []
    for i, rel in enumerate(paths):
        try:
            out[i] = load_image(Path(root, rel), size)
        except Exception as err:  # PIL raises OSError, SyntaxError, ValueError, ... for bad files
            failures.append(f"{rel} ({type(err).__name__}: {err})")
    return out, failures


def _exit_with_parent(parent: int) -> None:
    """Initializer of each worker of the pool: a worker whose parent is killed outright (SIGKILL, no cleanup
    runs there) exits too, instead of decoding its chunk for no one and then waiting for work forever.
    SIGTERM kills it on the spot again (`_terminate_as_exit` is the parent's)."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    ppid = os.getppid()

    def watch() -> None:
        # The parent pid as well as ours: under the forkserver start method our parent is the server.
        while os.getppid() == ppid and process_running(parent):
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


@contextlib.contextmanager
def _terminate_as_exit():
    """SIGTERM (Snakemake's, a cluster's stop before its SIGKILL) raises SystemExit here instead of ending the
    process on the spot, so that the `finally`s run: the worker pool is shut down and the temporary folder of
    the prepared directory removed (gigabytes at paper scale)."""
    if threading.current_thread() is not threading.main_thread():  # signal handlers are the main thread's
        yield
        return

    def stop(signum, frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)  # None: set outside Python


def _unique_images(records: list[PairRecord]) -> list[str]:
    return list(dict.fromkeys(p for r in records for p in (r.before, r.after)))


def _fill_cache(images: np.ndarray, root: Path, paths: list[str], size: int, workers: int, progress: bool) -> None:
    chunks = [paths[i:i + _CHUNK] for i in range(0, len(paths), _CHUNK)]
    failures: list[str] = []
    bar = tqdm(total=len(paths), desc="prepare images", unit="img", disable=not progress)

    def consume(results):
        start = 0
        for array, failed in results:
            images[start:start + len(array)] = array
            failures.extend(failed)
            start += len(array)
            bar.update(len(array))

    if workers == 1:
        consume(_load_chunk(str(root), chunk, size) for chunk in chunks)
    else:
        with ProcessPoolExecutor(max_workers=workers, initializer=_exit_with_parent,
                                 initargs=(os.getpid(),)) as pool:
            try:
                consume(pool.map(_load_chunk, repeat(str(root)), chunks, repeat(size)))
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    bar.close()
    if failures:
        raise ImageDecodeError(f"{len(failures)} image(s) under {root} could not be read: "
                               + "; ".join(failures[:_EXAMPLES])
                               + (f"; ... ({len(failures) - _EXAMPLES} more)" if len(failures) > _EXAMPLES else ""))


def _blank(sentence: str) -> bool:
    return not sentence.strip()


def apply_empty_references(records: list[PairRecord], policy: str, root: Path) -> list[PairRecord]:
    """Keep or drop sentences that are empty as distributed (`prepare.empty_references`).

    keep: every sentence as the authors use it; a pair whose only sentence is "" is trained on and
    scored against "" (the authors' Spot-the-Diff test set has 7 such pairs among its 1,270).
    drop: empty sentences are removed, and a pair left without any is left out of every stage.
    Either way one warning per split names the pairs whose every sentence is empty.
    """
    if policy not in ("keep", "drop"):
        raise ValueError(f"prepare: empty_references must be 'keep' or 'drop', got {policy!r}")
    for split in SPLITS:
        only_empty = [r.pair_id for r in records if r.split == split and all(map(_blank, r.references))]
        partly = sum(1 for r in records if r.split == split and any(map(_blank, r.references))) - len(only_empty)
        said = []
        if only_empty:
            what = "kept and scored against \"\"" if policy == "keep" else "left out"
            said.append(f"{len(only_empty)} pair(s) whose only sentences are empty, {what}: {examples(only_empty)}")
        if partly:
            said.append(f"{partly} pair(s) with an empty sentence beside others, that sentence "
                        f"{'kept' if policy == 'keep' else 'dropped'}")
        if said:
            warnings.warn(f"{root}, split {split} (prepare.empty_references: {policy}): " + "; ".join(said),
                          stacklevel=2)
    if policy == "keep":
        return records
    kept = []
    for r in records:
        sentences = tuple(c for c in r.references if not _blank(c))
        if sentences:
            kept.append(dataclasses.replace(r, references=sentences))
    return kept


def _split_summary(records: list[PairRecord]) -> dict[str, int]:
    return {"pairs": len(records), "change_pairs": sum(r.changed for r in records),
            "no_change_pairs": sum(not r.changed for r in records),
            "references": sum(len(r.references) for r in records)}


def prepare(root: str | Path, out_dir: str | Path, *, reader: str, image_size: int, empty_references: str,
            workers: int = 1, progress: bool = True) -> dict:
    """Read the dataset at `root` with `reader` and write the prepared directory `out_dir`
    (`empty_references`: see `apply_empty_references`)."""
    if not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"prepare: image_size must be a positive integer, got {image_size!r}")
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"prepare: workers must be an integer >= 1, got {workers!r}")
    root = Path(root)
    records = apply_empty_references(read_dataset(reader, root), empty_references, root)
    if not records:
        raise ValueError(f"prepare: the {reader} reader found no pairs under {root}")
    by_split = {split: [r for r in records if r.split == split] for split in SPLITS}
    for split, recs in by_split.items():
        ids = [r.pair_id for r in recs]
        if len(set(ids)) != len(ids):
            dup = sorted({i for i in ids if ids.count(i) > 1})
            raise ValueError(f"prepare: {len(dup)} pair id(s) repeat within split {split}: {dup[:_EXAMPLES]}")

    paths = _unique_images(records)
    row = {p: i for i, p in enumerate(paths)}
    summary = {"reader": reader, "image_size": image_size, "n_images": len(paths), "empty_references": empty_references,
               "splits": {split: _split_summary(recs) for split, recs in by_split.items()}}

    # A killed earlier run's temporary folder is removed by atomic_path (its writer is gone).
    with _terminate_as_exit(), atomic_path(out_dir) as tmp:
        tmp.mkdir()
        # Written in place on disk: the cache is never held twice in memory (paper scale: ~18 GB).
        images = open_memmap(tmp / "images.npy", mode="w+", dtype=np.uint8,
                             shape=(len(paths), image_size, image_size, 3))
        try:
            _fill_cache(images, root, paths, image_size, workers, progress)
            images.flush()
        finally:
            del images
        (tmp / "images.json").write_text(json.dumps(paths, indent=0) + "\n", encoding="utf-8")
        (tmp / "manifest").mkdir()
        (tmp / "references").mkdir()
        for split, recs in by_split.items():
            lines = [json.dumps({**r.to_dict(), "before_index": row[r.before], "after_index": row[r.after]})
                     for r in recs]
            (tmp / "manifest" / f"{split}.jsonl").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
            references = {r.pair_id: list(r.references) for r in recs}
            (tmp / "references" / f"{split}.json").write_text(json.dumps(references, indent=1) + "\n",
                                                             encoding="utf-8")
        if (root / "scene_descriptions.json").is_file():
            shutil.copyfile(root / "scene_descriptions.json", tmp / "scene_descriptions.json")
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary
