"""The two orchestrators: same stages, same commands, same files; lint; dry run."""
from __future__ import annotations

import collections
import re
from pathlib import Path
from types import SimpleNamespace


import yaml

from clip4idc import params as clip4idc_params
from workflow_helpers import BIN, REPO, dvc_stages, paper_settings, run, scratch_repo, snakemake_jobs

from clip4idc.stages import STAGES as STAGE_MODULES

STAGES = set(STAGE_MODULES)
# The stages of the embedded default's DAG: `released` runs only for the datasets of `released` (paper profile).
DEFAULT_STAGES = STAGES - {"released"}
# DVC's matrix has no condition: it needs several stages where Snakemake has one rule with input functions.
DVC_TO_RULE = {"finetune_adapt": "finetune", "evaluate_baseline": "evaluate", "decode_released": "decode",
               "evaluate_released": "evaluate"}
SEEDS = 3  # `seeds` of params.yaml, the same in every profile
RELEASED = ["clevr_change", "spot_the_diff"]   # the datasets whose weights the authors released


def test_snakemake_dry_run_lists_every_stage():
    jobs = snakemake_jobs(REPO, "--forceall")
    counts = collections.Counter(j["rule"] for j in jobs)
    assert set(counts) == DEFAULT_STAGES
    # three variants per seed; the baseline is scored by the same rule
    assert counts["finetune"] == counts["decode"] == 3 * SEEDS
    assert counts["evaluate"] == 3 * SEEDS + 1


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
    dvc = sorted((DVC_TO_RULE.get(name := s["name"].split("@")[0], name), s["cmd"], tuple(s["deps"]), tuple(s["outs"]))
                 for s in stages)
    assert [x[0] for x in snake] == [x[0] for x in dvc]
    for a, b in zip(snake, dvc):
        assert a == b, f"\nSnakemake: {a}\nDVC:       {b}"


def test_snakefile_and_dvc_yaml_name_the_same_dag():
    _assert_same_dag(REPO)


def test_paper_profile_dag_covers_three_datasets_in_both_tools(tmp_path):
    """The paper DAG: Snakemake by `--config profile=paper`; DVC with the shape keys set as README says."""
    repo = paper_settings(scratch_repo(tmp_path))
    jobs = snakemake_jobs(repo, "--forceall")
    counts = collections.Counter(j["rule"] for j in jobs)
    assert counts["fetch"] == counts["prepare"] == counts["adapt"] == 3 and counts["pretrain"] == 1
    assert counts["finetune"] == 9 * SEEDS and counts["released"] == len(RELEASED)
    # the released captioners are decoded and scored beside the variants
    assert counts["decode"] == 9 * SEEDS + len(RELEASED) and counts["evaluate"] == 9 * SEEDS + 3 + len(RELEASED)
    fetched = sorted(j["outputs"][0] for j in jobs if j["rule"] == "fetch")
    assert fetched == ["data/raw/clevr_change", "data/raw/ier", "data/raw/spot_the_diff"]
    assert all("--profile paper" in j["cmd"] for j in jobs)
    _assert_same_dag(repo)
    # The switch on the unchanged file gives Snakemake the same DAG.
    assert sorted(map(str, snakemake_jobs(REPO, "--forceall", "--config", "profile=paper"))) == sorted(map(str, jobs))


def test_released_weights_are_in_the_paper_dag_only(tmp_path):
    """The authors' released weights (stage `released`): downloaded, converted, then decoded by `decode` and scored
    by `evaluate` like any captioner, and read by the report; for clevr_change and spot_the_diff, in the paper
    DAG of both tools (DVC: released, decode_released, evaluate_released), in neither default DAG."""
    default = [(j["rule"], j["inputs"] + j["outputs"]) for j in snakemake_jobs(REPO, "--forceall")]
    default += [(s["name"], s["deps"] + s["outs"]) for s in dvc_stages(REPO)]
    assert not any("released" in name or any("/released" in f for f in files) for name, files in default)
    jobs = snakemake_jobs(REPO, "--forceall", "--config", "profile=paper")
    by_output = {out: j for j in jobs for out in j["outputs"]}
    for d in RELEASED:
        converted = by_output[f"models/{d}/released/finetune.pt"]
        assert converted["rule"] == "released" and f"--downloads data/downloads/{d}/released" in converted["cmd"]
        assert f"data/prepared/{d}" in converted["inputs"]
        assert {f"models/{d}/released/adapt.pt", f"results/metrics/{d}/released_retrieval.json"} <= set(
            converted["outputs"])
        decoded = by_output[f"results/predictions/{d}/released.json"]
        assert decoded["rule"] == "decode" and f"models/{d}/released/finetune.pt" in decoded["inputs"]
        scored = by_output[f"results/metrics/{d}/released.json"]
        assert scored["rule"] == "evaluate" and "--variant released" in scored["cmd"]
        assert {f"results/metrics/{d}/released.json", f"results/metrics/{d}/released_retrieval.json",
                f"results/predictions/{d}/released.json"} <= set(by_output["results/tables.tex"]["inputs"])
    assert not any("ier/released" in out for out in by_output)
    names = {s["name"] for s in dvc_stages(paper_settings(scratch_repo(tmp_path)))}
    assert {n for n in names if "released" in n} == {
        f"{stage}@{d}" for stage in ("released", "decode_released", "evaluate_released") for d in RELEASED}


def test_snakemake_refuses_config_overrides_other_than_profile():
    proc = run([str(BIN / "snakemake"), "-n", "--cores", "1", "--config", "decode={'max_len': 3}"], REPO, check=False)
    assert proc.returncode != 0
    assert "may only set `profile`" in proc.stdout + proc.stderr


def test_profile_switch_reaches_every_command():
    jobs = snakemake_jobs(REPO, "--forceall", "--config", "profile=smoke")
    assert all("--profile smoke" in j["cmd"] for j in jobs)


# --- Resources: every rule asks for execution.resources.<stage>; the SLURM profile submits them. ---

SLURM_PROFILE = REPO / "workflow" / "profiles" / "slurm"
# The stage of params.yaml `execution.resources` each rule reads.
RULE_STAGE = {"fetch": "fetch", "prepare": "prepare", "pretrain": "pretrain", "adapt": "adapt",
              "released": "decode", "finetune": "finetune", "decode": "decode", "baseline": "evaluate",
              "evaluate": "evaluate", "analyze": "evaluate", "report": "evaluate", "tables_pdf": "evaluate"}
PAPER_COUNTS = {"fetch": 3, "prepare": 3, "adapt": 3, "pretrain": 1, "released": len(RELEASED),
                "finetune": 9 * SEEDS, "decode": 9 * SEEDS + len(RELEASED),
                "evaluate": 9 * SEEDS + 3 + len(RELEASED), "analyze": 3, "baseline": 3, "report": 1, "tables_pdf": 1}


def _value(text: str):
    return int(text) if text.isdigit() else text


def _jobs_with_resources(*args: str) -> list[dict]:
    """Jobs of a Snakemake dry run with the threads and resources it prints for each."""
    out = run([str(BIN / "snakemake"), *args], REPO).stdout
    jobs = []
    for block in re.split(r"\n(?=\[.*\d{4}\]\n(?:local)?rule )", out):
        m = re.search(r"^(?:local)?rule (\w+):", block, re.M)
        if not m or m.group(1) == "all":
            continue
        fields = dict(re.findall(r"^\s+(wildcards|threads|resources|priority): (.*)$", block, re.M))
        pairs = lambda key: dict(kv.split("=", 1) for kv in fields.get(key, "").split(", ") if kv)
        shell = re.search(r"^Shell command: (.*)$", block, re.M)
        jobs.append({"rule": m.group(1), "wildcards": pairs("wildcards"), "threads": int(fields.get("threads", 1)),
                     "priority": int(fields.get("priority", 0)),
                     "resources": {k: _value(v) for k, v in pairs("resources").items()},
                     "cmd": shell.group(1) if shell else None})
    return jobs


def _assert_resources_from_params(jobs: list[dict], profile: str | None, cores: int) -> None:
    """Each job asks for its stage's gpus (none at all where 0), mem_mb, runtime and threads (0: all `cores`),
    from its dataset's params."""
    for job in jobs:
        dataset = job["wildcards"].get("dataset")
        want = getattr(clip4idc_params.load(REPO / "params.yaml", profile, dataset=dataset).execution.resources,
                       RULE_STAGE[job["rule"]])
        res = job["resources"]
        assert (res["mem_mb"], res["runtime"]) == (want.mem_mb, want.runtime), job
        assert res.get("gpu") == (want.gpus or None), job
        assert not {"gpus", "gres", "gpu_model", "nvidia_gpu"} & set(res), job
        assert job["threads"] == (want.threads or cores), job


def _slurm_dry_run() -> list[dict]:
    # The target before --config, which takes every argument after it.
    return _jobs_with_resources("--executor", "slurm", "-n", "--forceall", "--profile", str(SLURM_PROFILE),
                                "all", "--config", "profile=paper")


def test_slurm_profile_dry_run_schedules_the_paper_dag_with_its_resources():
    jobs = _slurm_dry_run()
    assert collections.Counter(j["rule"] for j in jobs) == PAPER_COUNTS
    cores = yaml.safe_load((SLURM_PROFILE / "config.yaml").read_text())["cores"]
    _assert_resources_from_params(jobs, "paper", cores)
    paper = clip4idc_params.load(REPO / "params.yaml", "paper").execution.resources
    assert paper.adapt.gpus == 2   # the authors' 2 GPUs: the case torchrun serves
    for job in (j for j in jobs if j["rule"] == "adapt"):
        assert (job["resources"]["gpu"], job["resources"]["mem_mb"], job["resources"]["runtime"]) == (
            paper.adapt.gpus, paper.adapt.mem_mb, paper.adapt.runtime)
    # threads 0 takes the profile's cores (a SLURM run has no --cores of its own)
    assert {j["threads"] for j in jobs if j["rule"] in {"pretrain", "adapt", "finetune", "decode"}} == {cores}
    # The cluster run executes the very commands of the local run (and so of dvc.yaml).
    local = _jobs_with_resources("-n", "-p", "--forceall", "--cores", "1", "all",
                                 "--config", "profile=paper")
    assert sorted(j["cmd"] for j in jobs) == sorted(j["cmd"] for j in local)


def test_slurm_plugin_turns_the_resources_into_sbatch_and_srun_options():
    """The names the rules use are the ones the plugin maps: gpu -> --gpus, mem_mb -> --mem, runtime -> -t,
    threads -> --cpus-per-task; a CPU job gets no GPU option at all."""
    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string
    from snakemake_executor_plugin_slurm_jobstep import get_gpu_setting

    class Resources(dict):
        __getattr__ = dict.__getitem__

    jobs = {j["rule"]: j for j in _slurm_dry_run()}
    submit_params = {"run_uuid": "x", "slurm_logfile": "x.log", "comment_str": "x", "account": "-A acc",
                     "partition": "-p part", "workdir": "."}

    def sbatch(rule: str) -> tuple[str, str]:
        job = SimpleNamespace(resources=Resources(jobs[rule]["resources"]), threads=jobs[rule]["threads"])
        return get_submit_command(job, submit_params) + set_gres_string(job), get_gpu_setting(job)

    paper = clip4idc_params.load(REPO / "params.yaml", "paper").execution.resources
    call, srun_gpus = sbatch("adapt")
    for option in (f"--gpus={paper.adapt.gpus}", f"--mem {paper.adapt.mem_mb}", f"-t {paper.adapt.runtime}",
                   f"--cpus-per-task={jobs['adapt']['threads']}"):
        assert option in call, call
    assert "--ntasks" not in call   # one task; `clip4idc adapt` starts one process per GPU (torchrun)
    assert srun_gpus == f"--gpus={paper.adapt.gpus}"
    call, srun_gpus = sbatch("evaluate")
    assert "--gpus" not in call and "--gres" not in call and srun_gpus == ""
    assert f"--mem {paper.evaluate.mem_mb}" in call and f"-t {paper.evaluate.runtime}" in call


def test_local_dry_runs_keep_working_with_gpu_resources():
    """The embedded default requests no GPU; the paper profile's GPU jobs are planned on a local run too:
    Snakemake limits only the resources given to --resources, so `gpu` does not hold them back."""
    jobs = _jobs_with_resources("-n", "--forceall", "--cores", "4", "all")
    assert {j["rule"] for j in jobs} == DEFAULT_STAGES
    assert not any("gpu" in j["resources"] for j in jobs)
    _assert_resources_from_params(jobs, None, 4)   # the profile params.yaml names
    # The embedded default runs fine-tunings, decodings and scorings side by side, one thread each.
    assert {j["threads"] for j in jobs if j["rule"] in {"finetune", "decode", "evaluate"}} == {1}
    paper = _jobs_with_resources("-n", "--forceall", "--cores", "1", "all", "--config", "profile=paper")
    assert collections.Counter(j["rule"] for j in paper) == PAPER_COUNTS
    assert {j["resources"]["gpu"] for j in paper if j["rule"] == "adapt"} == {2}


def test_the_longest_chain_is_scheduled_first():
    """pretrain -> adapt -> the adapt variant's fine-tunings is the longest chain of the DAG: its jobs outrank the
    other fine-tunings, which outrank every short job, so a free core never goes to a decoding or a scoring while
    that chain waits (in the main command's run before priorities, two of the three adapt fine-tunings started
    five minutes after they could have, behind decodings and scorings)."""
    jobs = _jobs_with_resources("-n", "--forceall", "--cores", "4", "all")
    rank = {(j["rule"], j["wildcards"].get("variant")): j["priority"] for j in jobs}
    chain = {rank[("adapt", None)], rank[("finetune", "adapt")]}
    others = {rank[("finetune", "clip-ft")], rank[("finetune", "no-adapt")]}
    short = {p for (rule, _), p in rank.items() if rule not in {"adapt", "finetune"}}
    assert min(chain) > max(others) > max(short), rank
    # Snakemake chooses the jobs with the largest sum of priorities that fits the cores: adaptation, using
    # `threads` cores, must outweigh that many fine-tunings, or the scheduler starts them instead (seen).
    adapt = next(j for j in jobs if j["rule"] == "adapt")
    assert adapt["priority"] > adapt["threads"] * max(others), (adapt, rank)
