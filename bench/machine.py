"""What the benchmarks share: a check that the CPU is idle before timing on it."""
from __future__ import annotations

import os
import sys
import time


def busy_cores(seconds: float = 1.0) -> float | None:
    """Cores kept busy by other processes while this one sleeps for `seconds` (from /proc/stat; None elsewhere)."""
    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        return sum(values[:8]), values[3] + values[4]  # all time (guest is inside user), idle + iowait
    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    return (os.cpu_count() or 1) * (1 - (idle1 - idle0) / max(total1 - total0, 1))


def warn_if_busy(busy: float | None) -> None:
    if busy is not None and busy > 0.2:
        print(f"warning: other processes kept {busy:.1f} of {os.cpu_count()} cores busy just before this run; with "
              f"as many torch threads as cores every parallel op then waits for a descheduled thread, and the "
              f"figures can drop many-fold (measured here: 10-250x with 2 threads). Re-run on an idle machine.",
              file=sys.stderr, flush=True)
