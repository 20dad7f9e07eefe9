"""Where and how torch runs, for training and inference alike: threads, device, checkpoint files.

Inference (the decode stage) needs these too and never imports training code, so they live here.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from .errors import CheckpointError
from .io import atomic_path

# What to do about a checkpoint that cannot be read, when nothing more is known of it.
REBUILD = "delete it and rerun the stage that writes it"


def stage_threads(explicit: int | None, configured: int) -> int | None:
    """How many threads a stage runs with: `--threads` where given; else OMP_NUM_THREADS, which Snakemake sets to
    the job's `threads` (from the same params, capped at its --cores); else `configured`, the stage's
    `execution.resources.<stage>.threads` (0: None, every core). The last is what a DVC or hand run gets, so
    both orchestrators run each stage with the same count: float sums, and so the trained weights, depend on it
    (measured: one adaptation step's loss differs in the 8th digit between 1 and 2 threads)."""
    if explicit:
        return explicit
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    return configured or None


def set_threads(threads: int | None) -> int:
    """Use at most the machine's cores: oversubscribed torch threads spin and slow everything.
    Under torchrun the cores are shared among the processes of this machine. Without `threads`,
    OMP_NUM_THREADS where set: Snakemake sets it to a job's `threads`, so jobs of one thread each
    run side by side (`execution.resources.<stage>.threads`); otherwise every core."""
    cores = max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    n = min(stage_threads(threads, 0) or cores, cores)
    torch.set_num_threads(n)
    return n


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def save_checkpoint(path: str | Path, content: dict[str, Any]) -> None:
    """Atomically save a checkpoint (or a raw state dict): an interrupted save leaves no file that looks finished
    (one killed midway leaves its temporary file, which the next save of `path` removes: io.atomic_path)."""
    with atomic_path(path) as tmp:
        torch.save(content, tmp)


def load_checkpoint(path: str | Path, rebuild: str = REBUILD) -> Any:
    """The content of a checkpoint file. One that torch cannot read (truncated by a full disk or a copy cut
    short, not a torch file, a pickle holding more than data) raises CheckpointError naming the file and
    saying how to get it back (`rebuild`: models/build.py's `rebuild_hint` names the stage where it can)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"expected a checkpoint file at {path}, found nothing")
    try:
        # weights_only: a checkpoint is data, never code (ARCHITECTURE.md, property 5).
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError, RuntimeError (not a zip), EOFError (truncated), ...
        # Its first sentence only: torch's next ones advise weights_only=False, wrong for a file that is no checkpoint.
        said = str(err).strip().split("\n", 1)[0].split(". ", 1)[0]
        raise CheckpointError(f"{path} cannot be read as a checkpoint ({type(err).__name__}: {said}); "
                              f"{rebuild}") from err
