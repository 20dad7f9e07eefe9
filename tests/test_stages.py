"""Every stage one hop from its rule: a module per stage, named after it, owning its arguments, and the
dependencies both orchestrators track derived from that module (clip4idc.deps)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from clip4idc import cli, deps
from clip4idc.stages import STAGES, command
from workflow_helpers import REPO, dvc_stages, paper_settings, scratch_repo

PACKAGE = REPO / "src" / "clip4idc"
DVC_TO_MODULE = {"finetune_adapt": "finetune", "evaluate_baseline": "evaluate", "decode_released": "decode",
                 "evaluate_released": "evaluate"}


@pytest.mark.parametrize("stage", STAGES)
def test_every_stage_module_owns_its_command_line(stage, capsys):
    module = cli.stage_module(stage)
    assert Path(module.__file__) == PACKAGE / "stages" / f"{stage}.py"
    assert module.HELP and module.__doc__ and callable(module.add_arguments) and callable(module.run)
    assert isinstance(module.PARAMS, tuple)
    with pytest.raises(SystemExit) as exit_:
        cli.main([command(stage), "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert f"usage: clip4idc {command(stage)}" in out and "--params" in out


def test_every_rule_is_a_stage_module():
    rules = {line.split()[1].rstrip(":") for f in (REPO / "workflow" / "rules").glob("*.smk")
             for line in f.read_text().splitlines() if line.startswith("rule ")}
    assert rules == set(STAGES)


def test_decoding_imports_no_training_code():
    for stage in ("decode", "baseline", "evaluate", "caption"):  # caption: a tool, a user's pairs
        training = [f for f in deps.code_files(stage, REPO) if "/train/" in f]
        assert training == [], (stage, training)


def test_released_weights_stage_imports_no_training_code():
    """It scores the authors' adaptation checkpoint by the adapt stage's own evaluate_retrieval, which lives in
    metrics/retrieval.py, not in training: editing the optimiser does not re-run a download and conversion."""
    closure = deps.code_files("released", REPO)
    assert [f for f in closure if "/train/" in f] == []
    assert {"src/clip4idc/metrics/retrieval.py", "src/clip4idc/models/released.py",
            "src/clip4idc/data/download.py"} <= set(closure)
    assert "src/clip4idc/metrics/retrieval.py" in deps.code_files("adapt", REPO)


def test_closure_follows_function_level_and_relative_imports(tmp_path):
    """A scratch package: `run` imports a module inside the function, which imports its sibling package's
    submodule; the closure holds them, the parents' __init__.py files and declared package data."""
    pkg = tmp_path / "src" / "clip4idc"
    files = {
        "__init__.py": "", "cli.py": "from . import params\n", "params.py": "", "unused.py": "",
        "stages/__init__.py": "", "stages/x.py": "PARAMS = ()\ndef run(args, params):\n    from ..a.b import f\n",
        "a/__init__.py": "", "a/b.py": "from ..c import d\nPACKAGE_DATA = ('data/*.json',)\n",
        "c/__init__.py": "", "c/d.py": "import clip4idc.e\n", "e.py": "", "data/x.json": "{}",
    }
    for name, text in files.items():
        (pkg / name).parent.mkdir(parents=True, exist_ok=True)
        (pkg / name).write_text(text)
    got = [f.removeprefix("src/clip4idc/") for f in deps.code_files("x", tmp_path)]
    assert got == sorted(["__init__.py", "cli.py", "params.py", "stages/__init__.py", "stages/x.py", "a/__init__.py",
                          "a/b.py", "c/__init__.py", "c/d.py", "e.py", "data/x.json"])


def test_every_package_data_file_is_declared_by_the_module_that_reads_it():
    declared = set()
    for module in PACKAGE.rglob("*.py"):
        for node in ast.parse(module.read_text()).body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "PACKAGE_DATA" for t in node.targets):
                declared |= {p for pattern in ast.literal_eval(node.value) for p in PACKAGE.glob(pattern)}
    data = {p for p in PACKAGE.rglob("*") if p.is_file() and p.suffix not in {".py", ".pyc"}}
    assert data and data <= declared, sorted(map(str, data - declared))


def _dvc_problems(repo, profile: str = "embedded") -> list[str]:
    problems = []
    for s in dvc_stages(repo):
        name, _, item = s["name"].partition("@")
        module = DVC_TO_MODULE.get(name, name)
        dataset = item.split("-")[0] or None
        code = [d for d in s["deps"] if d.startswith("src/")]
        want_code = deps.code_files(module, REPO)
        if code != want_code:
            problems.append(f"{s['name']}: add {sorted(set(want_code) - set(code))}, "
                            f"remove {sorted(set(code) - set(want_code))}")
        want_params = sorted(deps.params_keys(module, REPO, dataset=dataset, profile=profile))
        if s["params"] != want_params:
            problems.append(f"{s['name']}: params {s['params']}, expected {want_params}")
    return problems


def test_dvc_yaml_tracks_exactly_the_derived_code_and_params():
    """dvc.yaml lists by hand what deps.py derives (the Snakefile calls deps.py): the same files and keys."""
    problems = _dvc_problems(REPO)
    assert not problems, "dvc.yaml is out of step with the stage modules:\n" + "\n".join(problems)


def test_dvc_yaml_tracks_the_derived_code_and_params_of_the_released_weights_stages(tmp_path):
    """The stages of `released` (empty in the default, so not checked above) with the paper's list set."""
    repo = paper_settings(scratch_repo(tmp_path))
    names = [s["name"] for s in dvc_stages(repo)]
    assert "released@clevr_change" in names and "evaluate_released@spot_the_diff" in names
    problems = _dvc_problems(repo, "paper")
    assert not problems, "dvc.yaml is out of step with the stage modules:\n" + "\n".join(problems)


def test_tracked_params_are_read_as_written_and_a_missing_key_is_named():
    raw = {"profile": "embedded", "profiles": {"embedded": {}, "paper": {"decode": {"max_len": 9}}},
           "decode": {"split": "test", "max_len": 4}, "data": {"d": {"overrides": {}}}}
    assert deps.tracked_params(raw, "baseline", REPO, dataset="d") == {
        "profile": "embedded", "profiles.embedded": {}, "decode.split": "test", "data.d.overrides": {}}
    with pytest.raises(KeyError, match="'data.e.overrides', which stage 'baseline' tracks"):
        deps.tracked_params(raw, "baseline", REPO, dataset="e")
    assert deps.tracked_params(raw, "tables_pdf", REPO) == {}


def test_params_yaml_writes_out_every_key_a_stage_tracks_for_every_dataset_and_profile():
    import yaml
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    for profile in raw["profiles"]:
        for dataset in raw["data"]:
            for stage in STAGES:
                deps.tracked_params({**raw, "profile": profile}, stage, REPO, dataset=dataset)
