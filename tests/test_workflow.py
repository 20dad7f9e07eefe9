"""The two orchestrators: same stages, same commands, same files; lint; dry run."""
from __future__ import annotations

import collections
from pathlib import Path

import pytest

from workflow_helpers import BIN, REPO, dvc_stages, run, snakemake_jobs

STAGES = {"synthesize", "prepare", "pretrain", "adapt", "finetune", "finetune_adapt", "decode", "baseline",
          "evaluate", "evaluate_baseline", "report"}


def test_snakemake_dry_run_lists_every_stage():
    jobs = snakemake_jobs(REPO, "--forceall")
    counts = collections.Counter(j["rule"] for j in jobs)
    assert set(counts) == STAGES
    # three variants (clip-ft and no-adapt share a rule) per seed
    assert counts["finetune"] == 2 and counts["finetune_adapt"] == 1
    assert counts["decode"] == counts["evaluate"] == 3


def test_snakemake_lint_is_clean():
    proc = run([str(BIN / "snakemake"), "--lint"], REPO, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Congratulations" in proc.stdout + proc.stderr


def _comparable_deps(stages: list[dict]) -> None:
    """A DVC dep on a folder stands for the other stages' outputs inside it (report reads results/metrics)."""
    outs = [o for s in stages for o in s["outs"]]
    for s in stages:
        expanded = []
        # params.yaml is DVC's params dependency; Snakemake tracks the same values through `params:`.
        for d in (d for d in s["deps"] if d != "params.yaml"):
            inner = [o for o in outs if o.startswith(d.rstrip("/") + "/")]
            expanded.extend(inner if inner and not Path(REPO, d).suffix else [d])
        s["deps"] = sorted(expanded)


def test_snakefile_and_dvc_yaml_name_the_same_dag():
    jobs = snakemake_jobs(REPO, "--forceall")
    stages = dvc_stages(REPO)
    _comparable_deps(stages)
    snake = sorted((j["rule"], j["cmd"], tuple(j["inputs"]), tuple(j["outputs"])) for j in jobs)
    dvc = sorted((s["name"].split("@")[0], s["cmd"], tuple(s["deps"]), tuple(s["outs"])) for s in stages)
    assert [x[0] for x in snake] == [x[0] for x in dvc]
    for a, b in zip(snake, dvc):
        assert a == b, f"\nSnakemake: {a}\nDVC:       {b}"


def test_snakemake_refuses_config_overrides_other_than_profile():
    proc = run([str(BIN / "snakemake"), "-n", "--cores", "1", "--config", "decode={'max_len': 3}"], REPO, check=False)
    assert proc.returncode != 0
    assert "may only set `profile`" in proc.stdout + proc.stderr


def test_profile_switch_reaches_every_command():
    jobs = snakemake_jobs(REPO, "--forceall", "--config", "profile=smoke")
    assert all("--profile smoke" in j["cmd"] for j in jobs)
