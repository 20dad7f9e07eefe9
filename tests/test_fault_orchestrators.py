"""One run at a time across Snakemake and DVC (src/clip4idc/runlock.py): each refuses at once while the other
runs in the same folder, before any job runs, and the running one finishes untouched (issue 15)."""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from dvc.lock import Lock

from workflow_helpers import BIN, ENV, run, scratch_repo

pytestmark = pytest.mark.slow


def _repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    scratch_repo(repo)
    (repo / ".dvc" / "tmp").mkdir(exist_ok=True)   # ignored by git, made by DVC's first command
    return repo


def test_snakemake_refuses_while_dvc_runs_and_touches_nothing(tmp_path):
    repo = _repo(tmp_path)
    lock = Lock(str(repo / ".dvc" / "tmp" / "lock"))   # the lock `dvc repro` holds for its whole run
    lock.lock()
    try:
        proc = run([str(BIN / "snakemake"), "--cores", "1", "data/raw/clevr_synth", "--config", "profile=smoke"],
                   repo, check=False, timeout=300)
    finally:
        lock.unlock()
    said = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert f"DVC is running in {repo.resolve()} (process {os.getpid()}:" in said and "one runs at a time" in said
    assert not (repo / "data").exists()


def test_dvc_refuses_while_snakemake_runs_and_the_snakemake_run_finishes(tmp_path):
    repo = _repo(tmp_path)
    lock = repo / ".dvc" / "tmp" / "lock"
    snake = subprocess.Popen([str(BIN / "snakemake"), "--cores", "1", "models/pretrain/clip.pt", "--config",
                              "profile=smoke"], cwd=repo, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
    try:
        deadline = time.monotonic() + 120
        while not (lock.is_file() and "snakemake" in lock.read_text()):
            assert snake.poll() is None and time.monotonic() < deadline, "Snakemake never took the run lock"
            time.sleep(0.2)
        started = time.monotonic()
        proc = run([str(BIN / "dvc"), "repro"], repo, check=False, timeout=120)
        assert proc.returncode != 0 and "Unable to acquire lock" in proc.stdout + proc.stderr
        assert time.monotonic() - started < 60                # at once (DVC retries for 3 s), not after a stage
        assert lock.read_text().split() == [str(snake.pid), "snakemake"]   # the lock file names the holder
        out, _ = snake.communicate(timeout=600)
        assert snake.returncode == 0, out[-3000:]
    finally:
        if snake.poll() is None:
            snake.kill()
            snake.wait()
    assert (repo / "models/pretrain/clip.pt").is_file() and (repo / "data/prepared/clevr_synth").is_dir()
    assert not (repo / "dvc.lock").exists()                   # DVC ran no stage
