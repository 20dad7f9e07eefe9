"""Both orchestrators run the whole DAG for real (on a tiny params file) and re-run only what changed.

Slow: two complete runs of the pipeline, one per tool, plus re-runs and a DVC push/pull round trip.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from workflow_helpers import BIN, run, scratch_repo, snakemake_jobs

pytestmark = pytest.mark.slow

M = "results/metrics/clevr_synth"
OUTPUTS = ["results/tables.tex", "results/plots/ablation-clevr_synth.png", "results/plots/ablation-clevr_synth.pdf",
           f"{M}/constant.json", f"{M}/adapt_retrieval.json",
           *[f"{M}/{v}/seed2021.json" for v in ("clip-ft", "no-adapt", "adapt")]]
DECODE_ONWARDS = {"decode", "evaluate", "report"}


def _tiny_repo(dest: Path) -> Path:
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


def _set_decode_max_len(repo: Path, value: int) -> None:
    raw = yaml.safe_load((repo / "params.yaml").read_text())
    raw["decode"]["max_len"] = value
    (repo / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))


@pytest.fixture(scope="module")
def snakemake_run(tmp_path_factory) -> Path:
    repo = _tiny_repo(tmp_path_factory.mktemp("snake"))
    run([str(BIN / "snakemake"), "--cores", "2", "results/tables.tex"], repo)
    return repo


@pytest.fixture(scope="module")
def dvc_run(tmp_path_factory) -> Path:
    repo = _tiny_repo(tmp_path_factory.mktemp("dvc"))
    run([str(BIN / "dvc"), "repro"], repo)
    return repo


def test_snakemake_produces_every_output_and_then_has_nothing_to_do(snakemake_run):
    for out in OUTPUTS:
        assert (snakemake_run / out).is_file(), out
    assert snakemake_jobs(snakemake_run) == []


def test_dvc_produces_the_same_files_as_snakemake(snakemake_run, dvc_run):
    for out in OUTPUTS:
        assert (dvc_run / out).is_file(), out
    # Same code, params and seeds: the metric files agree number for number.
    for out in (o for o in OUTPUTS if o.endswith(".json")):
        assert json.loads((dvc_run / out).read_text()) == json.loads((snakemake_run / out).read_text()), out
    assert (dvc_run / "results/tables.tex").read_text() == (snakemake_run / "results/tables.tex").read_text()


def test_second_dvc_repro_has_nothing_to_do(dvc_run):
    out = run([str(BIN / "dvc"), "repro"], dvc_run).stdout
    assert "Running stage" not in out


def test_snakemake_decode_param_change_reruns_only_decode_evaluate_report(snakemake_run, tmp_path):
    repo = tmp_path / "copy"
    shutil.copytree(snakemake_run, repo, symlinks=True)
    _set_decode_max_len(repo, 3)
    rules = {j["rule"] for j in snakemake_jobs(repo)}
    assert rules == DECODE_ONWARDS


def test_dvc_decode_param_change_reruns_only_decode_evaluate_report(dvc_run, tmp_path):
    repo = tmp_path / "copy"
    shutil.copytree(dvc_run, repo, symlinks=True)
    _set_decode_max_len(repo, 3)
    out = run([str(BIN / "dvc"), "repro"], repo).stdout
    ran = {name.split("@")[0] for name in re.findall(r"Running stage '([^']+)'", out)}
    assert ran == DECODE_ONWARDS, out


def test_dvc_push_then_pull_in_a_fresh_clone_restores_everything(dvc_run, tmp_path):
    storage = tmp_path / "storage"
    run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "add", "-A"], dvc_run)
    run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "run"], dvc_run)
    run([str(BIN / "dvc"), "remote", "modify", "--local", "local", "url", str(storage)], dvc_run)
    run([str(BIN / "dvc"), "push"], dvc_run)
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(dvc_run), str(clone)], tmp_path)
    run([str(BIN / "dvc"), "remote", "modify", "--local", "local", "url", str(storage)], clone)
    run([str(BIN / "dvc"), "pull"], clone)
    for out in ["data/prepared/clevr_synth/images.npy", "models/pretrain/clip.pt",
                "models/clevr_synth/adapt/model.pt", "models/clevr_synth/finetune/adapt/seed2021.pt", *OUTPUTS]:
        assert (clone / out).is_file(), out
    status = run([str(BIN / "dvc"), "status"], clone).stdout
    assert "up to date" in status, status
    assert "Running stage" not in run([str(BIN / "dvc"), "repro"], clone).stdout
