"""The smoke DAG run for real by each orchestrator: what the run writes, and how a run is built once.

Shared by tests/test_orchestrators_snakemake.py and tests/test_orchestrators_dvc.py (and the `snakemake_run`
fixture of conftest.py). The suites run in two pytest-xdist workers (README: "Tests"), one module per worker
at a time; a run both modules read is built once for the whole session (`once_per_session`).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import pytest
import yaml
from filelock import FileLock

from workflow_helpers import BIN, run, scratch_repo

M = "results/metrics/clevr_synth"
A = "results/analysis/clevr_synth"
SEEDS = (2021, 2022, 2023)  # `seeds` of params.yaml, which the smoke profile keeps
VARIANTS = ("clip-ft", "no-adapt", "adapt")
FIGURES = [f"results/plots/{kind}-clevr_synth.{ext}" for kind in ("ablation", "training", "retrieval", "per_type",
                                                                 "qualitative", "confusion", "failures")
           for ext in ("png", "pdf")]
OUTPUTS = ["results/tables.tex", "results/tables.pdf", "results/ablation.json", *FIGURES,
           f"{M}/constant.json", f"{M}/adapt_retrieval.json",
           *[f"{M}/{v}/seed{s}.json" for v in VARIANTS for s in SEEDS],
           f"{A}/constant.json", f"{A}/references.json", *[f"{A}/{v}/seed{s}.json" for v in VARIANTS for s in SEEDS],
           "results/live/clevr_synth/adapt/plots/metrics/train/loss.tsv",
           *[f"results/live/clevr_synth/finetune/{v}/seed{s}/plots/metrics/val/CIDEr.tsv" for v in VARIANTS
             for s in SEEDS]]
DECODE_ONWARDS = {"decode", "evaluate", "analyze", "report", "tables_pdf"}   # the stages a decode param reaches


def smoke_repo(dest: Path) -> Path:
    """A scratch repository whose params.yaml holds the smoke profile's values at the top level.

    The tests then change a top-level key exactly as a user edits params.yaml.
    """
    scratch_repo(dest)
    raw = yaml.safe_load((dest / "params.yaml").read_text())
    for section, override in raw["profiles"]["smoke"].items():
        raw[section].update(override)
    raw["profiles"] = {"embedded": {}}
    (dest / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qam", "tiny params"], dest)
    return dest


def set_decode_max_len(repo: Path, value: int) -> None:
    raw = yaml.safe_load((repo / "params.yaml").read_text())
    raw["decode"]["max_len"] = value
    (repo / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))


def run_snakemake(dest: Path) -> Path:
    """The smoke DAG's rule `all` (tables, their PDF, the figures) run by Snakemake in a fresh repository. Every
    job's log also lists the modules it imported (python -X importtime writes to stderr, which the rules send
    to the log)."""
    repo = smoke_repo(dest)
    run([str(BIN / "snakemake"), "--cores", "2"], repo, env={"PYTHONPROFILEIMPORTTIME": "1"})
    return repo


def run_dvc(dest: Path) -> Path:
    repo = smoke_repo(dest)
    run([str(BIN / "dvc"), "repro"], repo)
    return repo


def once_per_session(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], object]) -> Path:
    """The folder `build(<empty folder>)` fills, built once for the whole test session and shared.

    Without pytest-xdist that is a session fixture's plain call. Under xdist each worker is a process with a
    basetemp of its own (<root>/gw0, <root>/gw1, ...): the folder is made in their common root, and a file lock
    lets the first worker that needs it build it while any other waits, then reads the same folder. A build
    that failed in one worker is reported as such in the others, not built again.
    """
    if "PYTEST_XDIST_WORKER" not in os.environ:
        target = tmp_path_factory.mktemp(name)
        build(target)
        return target
    root = tmp_path_factory.getbasetemp().parent
    target, done = root / name, root / f"{name}.done"
    with FileLock(str(root / f"{name}.lock")):
        if not done.is_file():
            if target.exists():
                pytest.fail(f"{target} was left unfinished: building it failed in another pytest-xdist worker "
                            "(see that test's error)")
            target.mkdir()
            build(target)
            done.touch()
    return target
