"""The two orchestrators: same stages, same commands, same files; lint; dry run."""
from __future__ import annotations

import collections
from pathlib import Path


import yaml

from workflow_helpers import BIN, REPO, dvc_stages, run, scratch_repo, snakemake_jobs

STAGES = {"fetch", "prepare", "pretrain", "adapt", "finetune", "finetune_adapt", "decode", "baseline",
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


def _assert_same_dag(repo: Path, *snakemake_args: str) -> None:
    jobs = snakemake_jobs(repo, "--forceall", *snakemake_args)
    stages = dvc_stages(repo)
    _comparable_deps(stages)
    snake = sorted((j["rule"], j["cmd"], tuple(j["inputs"]), tuple(j["outputs"])) for j in jobs)
    dvc = sorted((s["name"].split("@")[0], s["cmd"], tuple(s["deps"]), tuple(s["outs"])) for s in stages)
    assert [x[0] for x in snake] == [x[0] for x in dvc]
    for a, b in zip(snake, dvc):
        assert a == b, f"\nSnakemake: {a}\nDVC:       {b}"


def test_snakefile_and_dvc_yaml_name_the_same_dag():
    _assert_same_dag(REPO)


def test_paper_profile_dag_covers_three_datasets_in_both_tools(tmp_path):
    """The paper DAG: Snakemake by `--config profile=paper`; DVC with the shape keys set as README says
    (`dvc exp run -S profile=paper -S 'datasets=[...]'` writes exactly these two keys)."""
    repo = scratch_repo(tmp_path)
    raw = yaml.safe_load((repo / "params.yaml").read_text())
    raw["profile"], raw["datasets"] = "paper", raw["profiles"]["paper"]["datasets"]
    (repo / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    jobs = snakemake_jobs(repo, "--forceall")
    counts = collections.Counter(j["rule"] for j in jobs)
    assert counts["fetch"] == counts["prepare"] == counts["adapt"] == 3 and counts["pretrain"] == 1
    assert counts["finetune"] == 6 and counts["decode"] == counts["evaluate"] == 9
    fetched = sorted(j["outputs"][0] for j in jobs if j["rule"] == "fetch")
    assert fetched == ["data/raw/clevr_change", "data/raw/ier", "data/raw/spot_the_diff"]
    assert all("--profile paper" in j["cmd"] for j in jobs)
    _assert_same_dag(repo)
    # The switch on the unchanged file gives Snakemake the same DAG.
    assert sorted(map(str, snakemake_jobs(REPO, "--forceall", "--config", "profile=paper"))) == sorted(map(str, jobs))


def test_snakemake_refuses_config_overrides_other_than_profile():
    proc = run([str(BIN / "snakemake"), "-n", "--cores", "1", "--config", "decode={'max_len': 3}"], REPO, check=False)
    assert proc.returncode != 0
    assert "may only set `profile`" in proc.stdout + proc.stderr


def test_profile_switch_reaches_every_command():
    jobs = snakemake_jobs(REPO, "--forceall", "--config", "profile=smoke")
    assert all("--profile smoke" in j["cmd"] for j in jobs)
