"""One run at a time across both orchestrators.

Snakemake and DVC write the same outputs (data/, models/, results/) from the same command lines, and
each locks only against itself: a `dvc repro` started during a Snakemake run re-ran the first stages
under the running jobs and deleted finished outputs. DVC's repository lock (`.dvc/tmp/lock`, held by
every `dvc repro` and `dvc exp run` for its whole run through zc.lockfile) is the one lock both can see:
a Snakemake run checks it when it starts and then holds it until it ends (`Snakefile`, `onstart`), so

- Snakemake started while DVC runs refuses at once, naming DVC's process;
- `dvc repro` / `dvc exp run` started while Snakemake runs fails at once with DVC's "Unable to acquire
  lock" (the lock file names the Snakemake process).

Both refuse before any job runs, so no output is touched. DVC with `core.hardlink_lock` set uses another
kind of lock, which this one does not see.
"""
from __future__ import annotations

import os
from pathlib import Path

import zc.lockfile

DVC_LOCK = Path(".dvc") / "tmp" / "lock"


class RunLockError(RuntimeError):
    """The other orchestrator is running in this folder."""


def _holder(lock: Path) -> str:
    """What the lock file says of its holder: zc.lockfile writes its content template, DVC's the pid."""
    try:
        text = lock.read_text().strip()
    except OSError:
        return "unknown process"
    pid = text.split()[0] if text else ""
    cmdline = Path(f"/proc/{pid}/cmdline")
    if pid.isdigit() and cmdline.is_file():
        command = " ".join(cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace").split())
        return f"process {pid}: {command[:200]}"
    return f"process {text}" if text else "unknown process"


def hold_dvc_lock(root: str | os.PathLike, holder: str = "snakemake") -> zc.lockfile.LockFile | None:
    """Take DVC's repository lock of `root` for the caller's lifetime (keep the returned object), or raise
    RunLockError naming the process that holds it. None where `root` is no DVC repository."""
    dvc_dir = Path(root) / ".dvc"
    if not dvc_dir.is_dir():
        return None
    lock = Path(root) / DVC_LOCK
    lock.parent.mkdir(exist_ok=True)
    try:
        return zc.lockfile.LockFile(str(lock), content_template=f"{{pid}} {holder}")
    except zc.lockfile.LockError:
        raise RunLockError(
            f"DVC is running in {Path(root).resolve()} ({_holder(lock)} holds {lock}): Snakemake and DVC write the "
            f"same outputs, so one runs at a time; wait for it to finish, then run Snakemake again") from None
