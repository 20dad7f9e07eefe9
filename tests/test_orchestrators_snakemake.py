"""Snakemake runs the whole DAG for real (on a tiny params file), then re-runs only what changed.

Slow: a complete run of the pipeline (the `snakemake_run` fixture of conftest.py, which DVC's tests compare
with theirs, tests/test_orchestrators_dvc.py).
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from clip4idc import deps
from clip4idc.stages import STAGES
from whole_dag import A, DECODE_ONWARDS, FIGURES, M, OUTPUTS, SEEDS, VARIANTS, set_decode_max_len
from workflow_helpers import BIN, run, snakemake_jobs

pytestmark = [pytest.mark.slow, pytest.mark.needs_java, pytest.mark.needs_pdflatex]


def test_snakemake_produces_every_output_and_then_has_nothing_to_do(snakemake_run):
    for out in OUTPUTS:
        assert (snakemake_run / out).is_file(), out
    assert snakemake_jobs(snakemake_run) == []


def test_snakemake_decode_param_change_reruns_only_decode_evaluate_report(snakemake_run, tmp_path):
    repo = tmp_path / "copy"
    shutil.copytree(snakemake_run, repo, symlinks=True)
    set_decode_max_len(repo, 3)
    rules = {j["rule"] for j in snakemake_jobs(repo)}
    assert rules == DECODE_ONWARDS


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
