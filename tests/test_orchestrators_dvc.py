"""DVC runs the whole DAG for real (on a tiny params file), agrees with Snakemake's run, re-runs only what
changed, and pushes and pulls it.

Slow: a complete run of the pipeline, re-runs, and a DVC push/pull round trip.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from whole_dag import DECODE_ONWARDS, OUTPUTS, SEEDS, VARIANTS, run_dvc, set_decode_max_len
from workflow_helpers import BIN, run

pytestmark = [pytest.mark.slow, pytest.mark.needs_java, pytest.mark.needs_pdflatex]


@pytest.fixture(scope="module")
def dvc_run(tmp_path_factory) -> Path:
    return run_dvc(tmp_path_factory.mktemp("dvc"))


def test_second_dvc_repro_has_nothing_to_do(dvc_run):
    out = run([str(BIN / "dvc"), "repro"], dvc_run).stdout
    assert "Running stage" not in out


def test_dvc_decode_param_change_reruns_only_decode_evaluate_report(dvc_run, tmp_path):
    repo = tmp_path / "copy"
    shutil.copytree(dvc_run, repo, symlinks=True)
    set_decode_max_len(repo, 3)
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


def _ran(out: str) -> list[str]:
    return sorted(re.findall(r"Running stage '([^']+)'", out))


def test_dvc_metrics_show_lists_the_ablation_summary(dvc_run):
    shown = json.loads(run([str(BIN / "dvc"), "metrics", "show", "--json"], dvc_run).stdout)
    summary = json.loads((dvc_run / "results/ablation.json").read_text())
    listed = next(iter(shown.values()))["data"]["results/ablation.json"]["data"]
    assert listed == summary
    for variant in VARIANTS:
        assert listed["clevr_synth"][variant]["n_seeds"] == len(SEEDS)
        assert set(listed["clevr_synth"][variant]["sd"]) == set(listed["clevr_synth"][variant]["mean"])


def test_dvc_plots_lists_the_training_logs_and_figures(dvc_run):
    out = run([str(BIN / "dvc"), "plots", "show", "--json"], dvc_run).stdout
    for path in ["results/live/clevr_synth/finetune/adapt/seed2021/plots/metrics/val/CIDEr.tsv",
                 "results/live/clevr_synth/adapt/plots/metrics/train/loss.tsv",
                 "results/plots/training-clevr_synth.png"]:
        assert path in out, path


def test_dvc_adapt_param_change_reruns_only_the_adapt_variant(dvc_run, tmp_path):
    repo = tmp_path / "copy"
    shutil.copytree(dvc_run, repo, symlinks=True)
    raw = yaml.safe_load((repo / "params.yaml").read_text())
    raw["adapt"]["epochs"] += 1
    (repo / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    # A real run: DVC learns that the adaptation checkpoint changed only by producing it.
    ran = _ran(run([str(BIN / "dvc"), "repro"], repo).stdout)
    # Past decoding, DVC compares outputs: a seed whose captions came out byte-identical (a tiny model
    # often says the same after one more adaptation epoch) is rightly not scored again, the error
    # analysis (it reads the whole predictions folder) re-runs only if some seed's captions changed, and
    # the PDF is rebuilt only if tables.tex changed. Which of those ran is therefore read off the files.
    preds = [f"results/predictions/clevr_synth/adapt/seed{s}.json" for s in SEEDS]
    rescored = [f"evaluate@clevr_synth-adapt-{s}" for s, pred in zip(SEEDS, preds)
                if (repo / pred).read_bytes() != (dvc_run / pred).read_bytes()]
    reanalyzed = ["analyze@clevr_synth"] * bool(rescored)
    rebuilt = ["tables_pdf"] * ((repo / "results/tables.tex").read_bytes()
                                != (dvc_run / "results/tables.tex").read_bytes())
    assert ran == sorted(["adapt@clevr_synth", "report", *rescored, *reanalyzed, *rebuilt,
                          *[f"finetune_adapt@clevr_synth-{s}" for s in SEEDS],
                          *[f"decode@clevr_synth-adapt-{s}" for s in SEEDS]]), ran


def test_dvc_exp_run_with_one_more_seed_runs_only_that_seed(dvc_run, tmp_path):
    repo = tmp_path / "copy"
    shutil.copytree(dvc_run, repo, symlinks=True)
    run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "add", "-A"], repo)
    run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "baseline run"], repo)
    seeds = [*SEEDS, 7]
    out = run([str(BIN / "dvc"), "exp", "run", "-n", "seed7", "-S", f"seeds={seeds}"], repo).stdout
    assert _ran(out) == sorted(["report", "tables_pdf", "analyze@clevr_synth", "finetune_adapt@clevr_synth-7",
                                *[f"finetune@clevr_synth-{v}-7" for v in ("clip-ft", "no-adapt")],
                                *[f"{stage}@clevr_synth-{v}-7" for stage in ("decode", "evaluate") for v in VARIANTS]])
    summary = json.loads((repo / "results/ablation.json").read_text())
    assert summary["clevr_synth"]["adapt"]["n_seeds"] == 4
    shown = run([str(BIN / "dvc"), "exp", "show", "--csv"], repo).stdout
    header, *rows = shown.splitlines()
    assert "clevr_synth.adapt.mean.CIDEr" in header and "seeds" in header
    assert any(row.startswith("seed7,") for row in rows), shown


def test_dvc_produces_the_same_files_as_snakemake(snakemake_run, dvc_run):
    # Last in this module: under pytest-xdist the Snakemake run is built by the worker running the Snakemake
    # tests, by now long finished; this worker only waits for it if it is not.
    for out in OUTPUTS:
        assert (dvc_run / out).is_file(), out
    # Same code, params and seeds: the metric files agree number for number.
    for out in (o for o in OUTPUTS if o.endswith(".json")):
        assert json.loads((dvc_run / out).read_text()) == json.loads((snakemake_run / out).read_text()), out
    for out in (o for o in OUTPUTS if o.endswith(".tsv")):  # the training logs
        assert (dvc_run / out).read_text() == (snakemake_run / out).read_text(), out
    assert (dvc_run / "results/tables.tex").read_text() == (snakemake_run / "results/tables.tex").read_text()
