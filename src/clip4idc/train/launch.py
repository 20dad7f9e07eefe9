"""One training process per GPU, as `torchrun --standalone` would start them, for `adapt` and `finetune`
when `execution.resources.<stage>.gpus` > 1. torchrun's own argument parser would take our --log for its
--log-dir, hence its API rather than its command line."""
from __future__ import annotations

import os
import sys


def launch_per_gpu(stage: str, processes: int, argv: list[str]) -> int | None:
    """Run `clip4idc <argv>` once per GPU and return its exit status; None where this process should do
    the work itself (one process asked for, or already one of the launched processes)."""
    if processes <= 1 or "LOCAL_RANK" in os.environ:
        return None
    import uuid

    import torch
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch
    if torch.cuda.is_available() and torch.cuda.device_count() < processes:
        raise SystemExit(f"error: execution.resources.{stage}.gpus is {processes} but this machine has "
                         f"{torch.cuda.device_count()} GPU(s); lower it in params.yaml")
    if not torch.cuda.is_available():
        print(f"{stage}: no GPU; running {processes} CPU processes (gloo) as execution.resources.{stage}.gpus says",
              flush=True)
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=processes, run_id=str(uuid.uuid4()),
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0)
    try:
        elastic_launch(config, sys.executable)("-m", "clip4idc.cli", *argv)
    except ChildFailedError as err:
        print(f"error: {stage} failed in a training process:\n{err}", file=sys.stderr)
        return 1
    return 0
