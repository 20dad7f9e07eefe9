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

from clip4idc import deps
from clip4idc.stages import STAGES
from workflow_helpers import BIN, run, scratch_repo, snakemake_jobs

pytestmark = [pytest.mark.slow, pytest.mark.needs_java, pytest.mark.needs_pdflatex]

M = "results/metrics/clevr_synth"
SEEDS = (2021, 2022, 2023)  # `seeds` of params.yaml, which the smoke profile keeps
VARIANTS = ("clip-ft", "no-adapt", "adapt")
FIGURES = [f"results/plots/{kind}-clevr_synth.{ext}" for kind in ("ablation", "training", "retrieval", "per_type",
                                                                 "qualitative", "confusion", "failures")
           for ext in ("png", "pdf")]
A = "results/analysis/clevr_synth"
OUTPUTS = ["results/tables.tex", "results/tables.pdf", "results/ablation.json", *FIGURES,
           f"{M}/constant.json", f"{M}/adapt_retrieval.json",
           *[f"{M}/{v}/seed{s}.json" for v in VARIANTS for s in SEEDS],
           f"{A}/constant.json", f"{A}/references.json", *[f"{A}/{v}/seed{s}.json" for v in VARIANTS for s in SEEDS],
           "results/live/clevr_synth/adapt/plots/metrics/train/loss.tsv",
           *[f"results/live/clevr_synth/finetune/{v}/seed{s}/plots/metrics/val/CIDEr.tsv" for v in VARIANTS
             for s in SEEDS]]
DECODE_ONWARDS = {"decode", "evaluate", "analyze", "report", "tables_pdf"}


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
    # rule all: the tables, their PDF and the figures. Every job's log also lists the modules it
    # imported (python -X importtime writes to stderr, which the rules send to the log).
    run([str(BIN / "snakemake"), "--cores", "2"], repo, env={"PYTHONPROFILEIMPORTTIME": "1"})
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
    for out in (o for o in OUTPUTS if o.endswith(".tsv")):  # the training logs
        assert (dvc_run / out).read_text() == (snakemake_run / out).read_text(), out
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


def _ran(out: str) -> list[str]:
    return sorted(re.findall(r"Running stage '([^']+)'", out))


def test_snakemake_report_holds_every_figure_and_table_with_its_caption(snakemake_run):
    run([str(BIN / "snakemake"), "--report", "results/report.html"], snakemake_run)
    html = (snakemake_run / "results/report.html").read_text()
    for name in [*(Path(f).name for f in FIGURES if f.endswith(".png")), "tables.tex", "tables.pdf"]:
        assert name in html, name
    # Captions are rendered per figure kind (workflow/report/figure.rst), not one text for all.
    for phrase in ("constant-caption floor", "Training curves on", "Adaptation-stage retrieval on",
                   "each set scored as a corpus of its own", "Pairs are picked by position, never by outcome",
                   "compiled with pdflatex", "reproduced it", "read by the CLEVR-Change grammar",
                   "Failure gallery of"):
        assert phrase in html, phrase


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


def test_every_number_of_the_report_comes_from_the_run_files(snakemake_run, tmp_path):
    from clip4idc import params as params_mod
    from clip4idc.io import read_json
    from clip4idc.report.build import ReportInputs, build_report
    from provenance import allowed_decimals, printed_decimals

    runs = {v: [read_json(snakemake_run / M / v / f"seed{s}.json") for s in SEEDS] for v in VARIANTS}
    baseline = read_json(snakemake_run / M / "constant.json")
    retrieval = read_json(snakemake_run / M / "adapt_retrieval.json")
    analysis = snakemake_run / A
    analyses = {v: [read_json(analysis / v / f"seed{s}.json") for s in SEEDS] for v in VARIANTS}
    others = {"constant": read_json(analysis / "constant.json")}
    tex = (snakemake_run / "results/tables.tex").read_text()
    printed = printed_decimals(tex)
    allowed = allowed_decimals(runs, baseline, retrieval, analyses, others)
    assert printed <= allowed, printed - allowed
    # The error analysis's tables are printed, and their numbers are the analysis files' (without them, some of
    # the printed numbers would have no source).
    assert r"\label{tab:failures:clevr_synth}" in tex and r"\label{tab:attributes:clevr_synth}" in tex
    assert not printed <= allowed_decimals(runs, baseline, retrieval)
    # Missed and hallucinated changes are the metric files' change detection, counted by the same detector.
    for v in VARIANTS:
        for s, a in zip(SEEDS, analyses[v]):
            detection = read_json(snakemake_run / M / v / f"seed{s}.json")["detection"]
            assert a["counts"]["missed"] == detection["n_change"] - detection["n_change_named"]
            assert a["counts"]["hallucinated"] == detection["n_no_change"] - detection["n_no_change_said"]
    # The summary DVC shows is the mean over the seeds' metric files.
    summary = json.loads((snakemake_run / "results/ablation.json").read_text())["clevr_synth"]
    for v in VARIANTS:
        assert summary[v]["mean"]["CIDEr"] == pytest.approx(sum(r["metrics"]["CIDEr"] for r in runs[v]) / len(SEEDS))
    # The figures and tables are a function of the run's files alone: drawn again from them, byte for byte.
    again = tmp_path / "again"
    build_report(params_mod.load(snakemake_run / "params.yaml"),
                 ReportInputs(*(snakemake_run / d for d in ("results/metrics", "results/train", "results/predictions",
                                                            "data/prepared", "data/raw", "results/analysis"))),
                 tables=again / "tables.tex", plots_dir=again / "plots", summary=again / "ablation.json")
    assert (again / "tables.tex").read_text() == tex
    assert json.loads((again / "ablation.json").read_text()) == json.loads(
        (snakemake_run / "results/ablation.json").read_text())
    for figure in FIGURES:
        assert (again / "plots" / Path(figure).name).read_bytes() == (snakemake_run / figure).read_bytes(), figure


def _rule_of_log(relative: Path) -> str:
    """logs/<dataset>/finetune/<variant>/seed<seed>.log -> finetune; logs/report.log -> report."""
    return next(part for part in relative.with_suffix("").parts if part in STAGES)


def test_every_job_imported_only_modules_of_its_stage_closure(snakemake_run):
    """The code each stage depends on (deps.code_files, both tools) is not only computed but true: what
    each job of the run imported (python -X importtime) is in its stage's closure."""
    ran = snakemake_run
    package = ran / "src" / "clip4idc"
    seen = 0
    for log in ran.glob("logs/**/*.log"):
        text = log.read_text(errors="replace")
        modules = set(re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s*(clip4idc(?:\.\w+)*)\s*$", text, re.M))
        rule = _rule_of_log(log.relative_to(ran / "logs"))
        allowed = deps.code_files(rule, ran)
        files = set()
        for name in modules:
            base = package.joinpath(*name.split(".")[1:])
            found = base.with_suffix(".py") if base.with_suffix(".py").is_file() else base / "__init__.py"
            files.add(found.relative_to(ran).as_posix())
        assert modules, log
        assert files <= set(allowed), (rule, sorted(files - set(allowed)))
        seen += 1
    assert seen == len(snakemake_jobs(ran, "--forceall"))
