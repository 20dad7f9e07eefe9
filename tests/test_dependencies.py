"""Both orchestrators re-run exactly what an edit touches, and agree on it.

The smoke DAG recorded as run by both tools (on placeholder outputs); then edits one at a time,
each undone (content and modification time) before the next: a params key of each stage, a key of
the active and of another profile, keys no stage reads, and a file of each stage's import closure.
After each, the jobs Snakemake would run *because of the edit itself* (params changed, or an input
file of the source changed; jobs downstream of them are left out) must be the stages `dvc status`
reports changed, and both must be exactly the jobs whose tracked keys or code files the edit touches.

Slow: a Snakemake dry run and a `dvc status` per edit. That each closure holds what its stage imports is
checked on a real run, in test_orchestrators_snakemake.py and test_orchestrators_dvc.py.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import yaml

from clip4idc import deps
from clip4idc.stages import STAGES
from workflow_helpers import BIN, dvc_stages, run, scratch_repo, snakemake_jobs

pytestmark = pytest.mark.slow   # no stage runs (placeholder outputs): neither Java nor pdflatex is needed

SMOKE = "smoke"


def _params(repo: Path) -> dict:
    return yaml.safe_load((repo / "params.yaml").read_text())


def _placeholders(repo: Path) -> None:
    """An empty file or folder at every output of the DAG: what is compared below is which stages an edit
    puts out of date, decided by the recorded params and code, not by what the stages computed."""
    for job in snakemake_jobs(repo, "--forceall", "all"):
        for out in job["outputs"]:
            path = repo / out
            if Path(out).suffix:          # files: models/….pt, results/….json; folders have no suffix
                path.parent.mkdir(parents=True, exist_ok=True)
                path.touch()
            else:                         # (DVC reports an empty folder as modified: one file in each)
                path.mkdir(parents=True, exist_ok=True)
                (path / "placeholder").touch()


@pytest.fixture(scope="module")
def ran(tmp_path_factory) -> Path:
    """The smoke DAG recorded as done by both tools: Snakemake's metadata (params, code) by `--touch`,
    DVC's lock file by `dvc commit`, on placeholder outputs (seconds instead of a whole run)."""
    repo = scratch_repo(tmp_path_factory.mktemp("deps"))
    raw = _params(repo)
    raw["profile"] = SMOKE
    (repo / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    _placeholders(repo)
    # --touch records each job's params and code as a run would, in DAG order (--forceall: every job,
    # not only those whose placeholder happens to be older than its inputs).
    run([str(BIN / "snakemake"), "--touch", "--forceall", "--cores", "1", "all"], repo)
    run([str(BIN / "dvc"), "commit", "--force"], repo)   # the same outputs, recorded as DVC's
    # `dvc commit` moves each output into its cache and copies it back, with a new modification time;
    # put the outputs' times back in DAG order.
    run([str(BIN / "snakemake"), "--touch", "--cores", "1", "all"], repo)
    return repo


def _job_id(outputs) -> tuple[str, ...]:
    return tuple(sorted(outputs))


@pytest.fixture(scope="module")
def dag(ran) -> dict[tuple[str, ...], dict]:
    """Every job of the DAG by its outputs: its rule (named after its stage module), dataset (if any) and DVC
    stage name (DVC needs two stages for the rules `finetune` and `evaluate`)."""
    jobs = {}
    for j in snakemake_jobs(ran, "--forceall", "all"):
        dataset = re.search(r"--dataset (\S+)", j["cmd"])
        jobs[_job_id(j["outputs"])] = {"rule": j["rule"], "dataset": dataset.group(1) if dataset else None}
    for s in dvc_stages(ran):
        jobs[_job_id(s["outs"])]["dvc"] = s["name"]
    assert all("dvc" in j for j in jobs.values()), "every Snakemake job is a DVC stage"
    return jobs


def _out_of_date(repo: Path, dag: dict, edited: str | None = None) -> tuple[set, set]:
    """(Snakemake's jobs out of date by the edit itself, DVC's changed stages), both as job ids.

    Snakemake: after a params edit, the jobs whose recorded params differ (status "params changed" in
    `--summary`, which judges each job on its own); after a file edit, the jobs of the dry run that list
    the file as an input. Where neither finds a job, the dry run must be empty. The dry
    run's reasons cannot be used alone: a job below an out-of-date one is reported only as "updated by
    another job". (`--list-changes params` lists unchanged files too in Snakemake 9.27.)
    """
    by_output = {out: k for k in dag for out in k}
    jobs = None
    if edited is None:   # a params edit: no file of a job's closure changed
        summary = run([str(BIN / "snakemake"), "--summary", "--cores", "1", "all"], repo).stdout.splitlines()
        direct = {by_output[row.split("\t")[0]] for row in summary
                  if row.count("\t") >= 4 and row.split("\t")[4] == "params changed"}
    else:                # a file edit: params did not change
        jobs = snakemake_jobs(repo, "all")
        direct = {_job_id(j["outputs"]) for j in jobs if edited in j["inputs"]}
    if not direct:
        jobs = snakemake_jobs(repo, "all") if jobs is None else jobs
        assert jobs == [], f"nothing changed, yet Snakemake would run {[j['rule'] for j in jobs]}"
    status = json.loads(run([str(BIN / "dvc"), "status", "--json"], repo).stdout or "{}")
    by_name = {j["dvc"]: k for k, j in dag.items()}
    return direct, {by_name[name] for name in status}


def _touched_by_key(key: str, dag: dict, profile: str = SMOKE) -> set:
    def covers(tracked: str) -> bool:
        return key == tracked or key.startswith(tracked + ".") or tracked.startswith(key + ".")
    return {k for k, j in dag.items()
            if any(covers(t) for t in deps.params_keys(j["rule"], ".", dataset=j["dataset"], profile=profile))}


def _touched_by_file(path: str, dag: dict, repo: Path) -> set:
    return {k for k, j in dag.items() if path in deps.code_files(j["rule"], repo)}


class Edit:
    """Change a file for the duration of a `with`, then put back its bytes and modification time."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        self.text, stat = self.path.read_bytes(), self.path.stat()
        self.times = (stat.st_atime_ns, stat.st_mtime_ns)
        return self

    def __exit__(self, *exc):
        self.path.write_bytes(self.text)
        os.utime(self.path, ns=self.times)


def _set_key(repo: Path, key: str, value) -> None:
    raw = _params(repo)
    node = raw
    *parents, last = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    (repo / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))


def _check(repo: Path, dag: dict, what: str, expected: set, edited: str | None = None) -> list[str]:
    snake, dvc = _out_of_date(repo, dag, edited)
    names = lambda ids: sorted(dag[i]["dvc"] for i in ids)
    if snake == dvc == expected:
        return []
    return [f"{what}: expected {names(expected)}; Snakemake {names(snake)}; DVC {names(dvc)}"]


# A params key of each stage (one each, plus keys shared by several), of the active and of another
# profile, and keys no stage reads: the new value of each.
KEY_EDITS = {
    "synthesize.seed": 1,                           # fetch
    "data.clevr_synth.root": "./",                  # fetch, prepare
    "prepare.workers": 1,                           # prepare
    "pretrain.lr": 1.0e-3,                          # pretrain
    "model.captioner.dropout": 0.2,                 # pretrain, adapt, finetune
    "adapt.distractor_swap_p": 0.25,                # adapt
    "finetune.patience": 3,                         # finetune
    "decode.beam_size": 2,                          # decode
    "decode.split": "val",                          # decode, baseline, evaluate, analyze, report
    "evaluate.spice": False,                        # evaluate
    "data.clevr_synth.label": "renamed",            # report
    "data.clevr_synth.overrides": {"decode": {"max_len": 4}},   # every stage of the dataset
    "seeds": [2021, 2022, 2023],                    # report (rewritten, same value: nothing)
    "released": [],                                 # report (rewritten, same value: nothing)
    f"profiles.{SMOKE}.decode.max_len": 5,          # the active profile: every stage that reads params
    "profiles.paper.finetune.epochs": 2,            # another profile: nothing
    "execution.checkpoint_every": 7,                # how, not what: nothing
    "download.retries": 2,                          # how downloads behave: nothing
}
# Hand-written expectations for some of them (the rest follow from the stages' PARAMS).
EXPECTED_RULES = {
    "synthesize.seed": {"fetch"}, "prepare.workers": {"prepare"}, "data.clevr_synth.label": {"report"},
    "seeds": set(), "released": set(), "profiles.paper.finetune.epochs": set(), "execution.checkpoint_every": set(),
    "download.retries": set(), "decode.split": {"decode", "baseline", "evaluate", "analyze", "report"},
}


def test_nothing_is_out_of_date_after_the_run(ran, dag):
    assert _out_of_date(ran, dag) == (set(), set())


def test_each_params_edit_reruns_exactly_the_stages_that_read_the_key_in_both_tools(ran, dag):
    problems = []
    for key, value in KEY_EDITS.items():
        with Edit(ran / "params.yaml"):
            _set_key(ran, key, value)
            expected = set() if key in ("seeds", "released") else _touched_by_key(key, dag)
            if key in EXPECTED_RULES:
                assert {dag[i]["rule"] for i in expected} == EXPECTED_RULES[key], key
            problems += _check(ran, dag, f"params {key}", expected)
    assert not problems, "\n".join(problems)


# The stages of the smoke DAG: every stage but `released`, which runs only for the datasets of `released`
# (the paper profile's; its dependencies are checked in test_stages.py and test_workflow.py).
SMOKE_STAGES = tuple(s for s in STAGES if s != "released")
# One file of each stage's import closure, chosen to be in as few closures as possible, and files
# several stages share.
FILE_EDITS = {f"src/clip4idc/stages/{s}.py": {s} for s in SMOKE_STAGES} | {
    "src/clip4idc/data/synthetic.py": {"fetch", "analyze"},   # the generator; CLEVR's vocabulary for the grammar
    "src/clip4idc/data/prepare.py": {"prepare"},
    "src/clip4idc/train/pretrain.py": {"pretrain"},
    "src/clip4idc/train/adapt.py": {"adapt"},
    "src/clip4idc/train/finetune.py": {"finetune"},
    "src/clip4idc/generate.py": {"finetune", "decode"},
    "src/clip4idc/text.py": {"adapt", "finetune", "decode"},
    "src/clip4idc/metrics/subsets.py": {"evaluate"},
    "src/clip4idc/analysis/clevr_grammar.py": {"analyze"},
    "src/clip4idc/analysis/no_change.py": {"evaluate", "analyze"},
    "src/clip4idc/analysis/outcomes.py": {"analyze", "report"},
    "src/clip4idc/report/plots.py": {"report"},
    "src/clip4idc/model_configs/clip4idc-tiny.json": {"pretrain", "adapt", "finetune", "decode"},
    "src/clip4idc/params.py": set(SMOKE_STAGES),
}


def test_each_code_edit_reruns_exactly_the_stages_whose_closure_holds_the_file_in_both_tools(ran, dag):
    problems = []
    for path, rules in FILE_EDITS.items():
        with Edit(ran / path) as edit:
            (ran / path).write_bytes(edit.text + (b"\n" if path.endswith(".json") else b"\n# edited\n"))
            expected = _touched_by_file(path, dag, ran)
            assert {dag[i]["rule"] for i in expected} == rules, path
            problems += _check(ran, dag, f"file {path}", expected, edited=path)
    assert not problems, "\n".join(problems)
