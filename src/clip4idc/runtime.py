"""Where and how torch runs, for training and inference alike: threads, device, checkpoint files.

Inference (the decode stage) needs these too and never imports training code, so they live here.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from .io import atomic_path


def set_threads(threads: int | None) -> int:
    """Use at most the machine's cores: oversubscribed torch threads spin and slow everything.
    Under torchrun the cores are shared among the processes of this machine. Without `threads`,
    OMP_NUM_THREADS where set: Snakemake sets it to a job's `threads`, so jobs of one thread each
    run side by side (`execution.resources.<stage>.threads`); otherwise every core."""
    cores = max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    if not threads:
        env = os.environ.get("OMP_NUM_THREADS", "")
        threads = int(env) if env.isdigit() else None
    n = min(threads or cores, cores)
    torch.set_num_threads(n)
    return n


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def save_checkpoint(path: str | Path, content: dict[str, Any]) -> None:
    """Atomically save a checkpoint (or a raw state dict): an interrupted save leaves nothing."""
    with atomic_path(path) as tmp:
        torch.save(content, tmp)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"expected a checkpoint file at {path}, found nothing")
    # weights_only: a checkpoint is data, never code (ARCHITECTURE.md, property 5).
    return torch.load(path, map_location="cpu", weights_only=True)
