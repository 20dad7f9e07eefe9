"""Image loading speed, prepared cache vs PNG decode per step: pairs/s at CLEVR-Change's scale.

Usage: python bench/cache_speed.py [--scenes 300] [--batches 0] [--batch 64] [--workers 0 2]
       [--repeats 3] [--threads 2] [--image-size 224]

Writes a CLEVR-Change-format dataset of 480x320 PNGs with `synthesize` into a temporary directory,
prepares it with the project's `prepare()` (image cache at image_size, 2 workers: the one-off cost),
then times, for the same training pairs (each scene gives a change and a distractor pair):
- cached: `PairDataset` over the `Prepared` directory (uint8 memmap → normalised tensors);
- decode per step: the two PNGs of each pair opened and resized with `prepare.load_image` in
  every `__getitem__`, then the same normalisation;
both through a torch DataLoader with the project's `collate`, shuffled, one warm-up pass then the
best of `--repeats` passes, the two paths' passes alternating. Both paths give identical batches
(checked). A last check decodes some of the PNGs re-saved with pixel noise, which brings them to
the real dataset's file size, to see whether the small synthetic files make decoding cheaper than
real CLEVR PNGs (~150-250 kB). Figures: bench/README.md.
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from clip4idc.data.dataset import PairDataset, Prepared, collate, image_tensor
from clip4idc.data.prepare import load_image, prepare
from clip4idc.data.synthetic import synthesize


class DecodeDataset(Dataset):
    """The pairs of a `PairDataset`, but decoded from the PNGs and resized at every item."""

    def __init__(self, root: Path, manifest: list[dict], size: int):
        self.root, self.manifest, self.size = root, manifest, size

    def __len__(self) -> int:
        return len(self.manifest)

    def _image(self, rel: str) -> torch.Tensor:
        return image_tensor(self.root / rel, self.size)  # what Prepared.image gives, from the PNG

    def __getitem__(self, index: int) -> dict:
        m = self.manifest[index]
        return {"before": self._image(m["before"]), "after": self._image(m["after"]),
                "pair": index, "pair_id": m["pair_id"]}


def loader(dataset: Dataset, batch: int, workers: int, seed: int = 0) -> DataLoader:
    # Shuffled like the training loops; persistent workers so a pass times steady-state throughput,
    # not worker start-up.
    return DataLoader(dataset, batch_size=batch, shuffle=True, generator=torch.Generator().manual_seed(seed),
                      num_workers=workers, persistent_workers=workers > 0, collate_fn=collate)


def one_pass(dl: DataLoader, batches: int) -> float:
    n, start = 0, time.perf_counter()
    for i, b in enumerate(dl):
        n += len(b["pair"])
        if batches and i + 1 >= batches:
            break
    return n / (time.perf_counter() - start)


def pairs_per_s(datasets: list[Dataset], batch: int, workers: int, batches: int, repeats: int) -> list[float]:
    """Best pairs/s of each dataset. Passes alternate between the datasets, so that a burst of
    other load on the machine slows both rather than one."""
    loaders = [loader(d, batch, workers) for d in datasets]
    for dl in loaders:
        one_pass(dl, batches)  # warm-up: page cache, worker start-up
    best = [0.0] * len(loaders)
    for _ in range(repeats):
        for k, dl in enumerate(loaders):
            best[k] = max(best[k], one_pass(dl, batches))
    del loaders
    return best


def png_sizes(root: Path, rels: list[str]) -> np.ndarray:
    return np.array([os.path.getsize(root / r) for r in rels]) / 1e3


def noisy_copies(root: Path, rels: list[str], out: Path, sigma: float) -> list[Path]:
    """The PNGs re-saved (PIL's default compression) with Gaussian pixel noise, like a path tracer's."""
    out.mkdir()
    rng = np.random.default_rng(0)
    paths = []
    for i, rel in enumerate(rels):
        with Image.open(root / rel) as im:
            pixels = np.asarray(im.convert("RGB"), dtype=np.float32)
        pixels = np.clip(pixels + rng.normal(0.0, sigma, pixels.shape) + 0.5, 0, 255).astype(np.uint8)
        paths.append(out / f"{i:04d}.png")
        Image.fromarray(pixels).save(paths[-1], format="PNG")
    return paths


def ms_per_image(paths: list[Path], size: int, repeats: int) -> float:
    for p in paths:  # warm-up
        load_image(p, size)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for p in paths:
            load_image(p, size)
        best = min(best, time.perf_counter() - start)
    return 1e3 * best / len(paths)


def cpu_busy(seconds: float = 1.0) -> float:
    """Fraction of all CPUs' time not idle over `seconds` (Linux /proc/stat; 0 elsewhere)."""
    def ticks() -> tuple[int, int]:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(values), values[3] + values[4]  # all, idle + iowait
    try:
        total0, idle0 = ticks()
        time.sleep(seconds)
        total1, idle1 = ticks()
    except OSError:
        return 0.0
    return 1.0 - (idle1 - idle0) / max(total1 - total0, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenes", type=int, default=300, help="training scenes (2 pairs, 3 PNGs each)")
    ap.add_argument("--batches", type=int, default=0, help="batches per timed pass (0: the whole split)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="DataLoader num_workers to time")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--width", type=int, default=480)
    ap.add_argument("--height", type=int, default=320)
    ap.add_argument("--noise", type=float, default=2.0,
                    help="pixel noise (std) of the decode check's copies, chosen to match real PNG sizes")
    ap.add_argument("--noise-images", type=int, default=60, help="PNGs in the decode check")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    busy = cpu_busy()
    if busy > 0.1:
        print(f"warning: the CPUs were {busy:.0%} busy before the run; other work skews the figures")

    tmp = Path(tempfile.mkdtemp(prefix="cache_speed_"))
    try:
        root, out = tmp / "clevr_change", tmp / "prepared"
        start = time.perf_counter()
        synthesize(root, seed=0, n_train=args.scenes, n_val=1, n_test=1, width=args.width, height=args.height,
                   min_objects=3, max_objects=6, n_change_captions=3, n_no_change_captions=3, workers=2,
                   progress=False)
        synth_s = time.perf_counter() - start
        start = time.perf_counter()
        summary = prepare(root, out, reader="clevr_change", image_size=args.image_size, empty_references="drop",
                          workers=2, progress=False)
        prep_s = time.perf_counter() - start
        n_images = summary["n_images"]

        cached = PairDataset(Prepared(out), "train")
        decode = DecodeDataset(root, cached.manifest, args.image_size)
        rels = sorted({p for m in cached.manifest for p in (m["before"], m["after"])})
        kb = png_sizes(root, rels)
        print(f"dataset: {args.scenes} train scenes, {len(cached)} train pairs, {len(rels)} train PNGs "
              f"({args.width}x{args.height}, {kb.mean():.0f} kB mean, {kb.min():.0f}-{kb.max():.0f} kB), "
              f"synthesized in {synth_s:.1f} s")

        # Same pairs, same order, same tensors.
        a = next(iter(loader(cached, args.batch, 0)))
        b = next(iter(loader(decode, args.batch, 0)))
        assert a["pair_id"] == b["pair_id"]
        assert torch.equal(a["before"], b["before"]) and torch.equal(a["after"], b["after"]), "batches differ"

        rows = []
        for workers in args.workers:
            c, d = pairs_per_s([cached, decode], args.batch, workers, args.batches, args.repeats)
            rows.append((workers, c, d))
            print(f"num_workers={workers}: cached {c:.0f} pairs/s, decode per step {d:.0f} pairs/s", flush=True)

        # Are the synthetic PNGs cheaper to decode than real ones? Decode noisy copies of real size.
        sample = rels[:args.noise_images]
        noisy = noisy_copies(root, sample, tmp / "noisy", args.noise)
        noisy_kb = np.array([os.path.getsize(p) for p in noisy]) / 1e3
        ms_synth = ms_per_image([root / r for r in sample], args.image_size, args.repeats)
        ms_noisy = ms_per_image(noisy, args.image_size, args.repeats)

        batches = f"{args.batches} batches" if args.batches else "whole split"
        print(f"\n{len(cached)} pairs, batch {args.batch}, {batches} per pass, best of {args.repeats} after a "
              f"warm-up, {args.threads} threads, {args.width}x{args.height} PNG -> {args.image_size}x"
              f"{args.image_size}\n")
        print("| num_workers | cached (pairs/s) | decode per step (pairs/s) | speed-up |")
        print("|---|---|---|---|")
        for workers, c, d in rows:
            print(f"| {workers} | {c:.0f} | {d:.0f} | {c / d:.1f}x |")
        print(f"\n| one-off: `prepare()`, workers=2 | {n_images / prep_s:.0f} images/s "
              f"({n_images} images in {prep_s:.1f} s) |")
        print("|---|---|")
        print(f"| load_image, synthetic PNG ({kb[:len(sample)].mean():.0f} kB mean) | {ms_synth:.2f} ms/image |")
        print(f"| load_image, noisy copy, sigma {args.noise:g} ({noisy_kb.mean():.0f} kB mean) "
              f"| {ms_noisy:.2f} ms/image |")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
