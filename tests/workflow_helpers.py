"""Helpers to read the two orchestrators' DAGs and run them in a scratch copy of the repo."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "DVC_NO_ANALYTICS": "1", "MPLBACKEND": "Agg",
       "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
LOG_REDIRECT = re.compile(r"\s*>\s*\S+\s+2>&1\s*$")


def run(cmd: list[str], cwd: Path, check: bool = True, timeout: int = 900,
        env: dict | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env={**ENV, **(env or {})}, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def snakemake_jobs(cwd: Path, *extra: str) -> list[dict]:
    """Jobs of a Snakemake dry run of the default target (rule `all`, itself left out): rule, inputs, outputs,
    shell command (log redirect removed) and the reason Snakemake gives for running it."""
    out = run([str(BIN / "snakemake"), "-n", "-p", "--cores", "1", *extra], cwd).stdout
    jobs = []
    for block in re.split(r"\n(?=\[.*\d{4}\]\n(?:local)?rule )", out):
        m = re.search(r"^(?:local)?rule (\w+):", block, re.M)
        if not m or m.group(1) == "all":
            continue
        fields = {k: [x.strip() for x in v.split(",") if x.strip()]
                  for k, v in re.findall(r"^\s+(input|output): (.*)$", block, re.M)}
        shell = re.search(r"^Shell command: (.*)$", block, re.M)
        reason = re.search(r"^\s+reason: (.*)$", block, re.M)
        jobs.append({"rule": m.group(1), "inputs": sorted(fields.get("input", [])),
                     "outputs": sorted(fields.get("output", [])),
                     "cmd": LOG_REDIRECT.sub("", shell.group(1)).strip() if shell else None,
                     "reason": reason.group(1) if reason else ""})
    return jobs


def dvc_stages(cwd: Path) -> list[dict]:
    """Stages of dvc.yaml as DVC resolves them (matrix expanded, templates filled)."""
    code = (
        "import json\n"
        "from dvc.repo import Repo\n"
        "repo = Repo('.')\n"
        "print(json.dumps([{'name': s.name, 'cmd': s.cmd, 'deps': sorted(d.def_path for d in s.deps),"
        " 'outs': sorted(o.def_path for o in s.outs),"
        " 'params': sorted(k for d in s.deps for k in (getattr(d, 'params', None) or []))}"
        " for s in repo.index.stages]))\n"
    )
    import json
    return json.loads(run([sys.executable, "-c", code], cwd).stdout)


def scratch_repo(dest: Path) -> Path:
    """A git repository holding the tracked (and new, unignored) files of this checkout."""
    files = run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], REPO).stdout.split()
    for f in files:
        if (REPO / f).is_file():
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / f, dest / f)
    run(["git", "init", "-q"], dest)
    run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "add", "-A"], dest)
    run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "scratch"], dest)
    return dest


def paper_settings(repo: Path) -> Path:
    """`repo`'s params.yaml with the paper profile and the keys that shape DVC's DAG set as README says
    (`dvc exp run -S profile=paper -S 'datasets=[...]' -S 'released=[...]'` writes exactly these three keys)."""
    raw = yaml.safe_load((repo / "params.yaml").read_text())
    paper = raw["profiles"]["paper"]
    raw["profile"], raw["datasets"], raw["released"] = "paper", paper["datasets"], paper["released"]
    (repo / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return repo
