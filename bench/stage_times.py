"""Per-stage time breakdown of a Snakemake run, from the log Snakemake writes for every run.

    python bench/stage_times.py [.snakemake/log/<time>.snakemake.log] [--json out.json]

Without a path: the newest log under .snakemake/log. Each job's wall time is from the timestamp before
its `rule …:` block to the one before its `Finished jobid` line (whole seconds); jobs that ran side by
side overlap, so the stages' sums can exceed the run's wall time, which is printed too.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from datetime import datetime
from pathlib import Path

STAMP = re.compile(r"^\[(\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4})\]$")
RULE = re.compile(r"^(?:local)?rule (\w+):$")
JOBID = re.compile(r"^\s+jobid: (\d+)$")
WILDCARDS = re.compile(r"^\s+wildcards: (.*)$")
FINISHED = re.compile(r"^Finished jobid: (\d+) \(Rule: (\w+)\)$")


def parse(log: Path) -> tuple[list[dict], float]:
    """→ (jobs: rule, wildcards, start, end, seconds; the run's wall seconds, first stamp to last)."""
    stamp = first = last = None
    pending: dict | None = None
    started: dict[int, dict] = {}
    jobs = []
    for line in log.read_text(errors="replace").splitlines():
        if m := STAMP.match(line):
            stamp = datetime.strptime(m.group(1), "%a %b %d %H:%M:%S %Y")
            first, last = first or stamp, stamp
        elif m := RULE.match(line):
            pending = {"rule": m.group(1), "wildcards": "", "start": stamp}
        elif pending is not None and (m := WILDCARDS.match(line)):
            pending["wildcards"] = m.group(1)
        elif pending is not None and (m := JOBID.match(line)):
            started[int(m.group(1))] = pending
        elif m := FINISHED.match(line):
            job = started.pop(int(m.group(1)), None)
            if job is None or job["rule"] != m.group(2):
                raise ValueError(f"{log}: 'Finished jobid: {m.group(1)}' without its start")
            job["end"] = stamp
            job["seconds"] = (stamp - job["start"]).total_seconds()
            if job["rule"] != "all":   # the target rule runs nothing
                jobs.append(job)
    if first is None:
        raise ValueError(f"{log} has no Snakemake timestamps: is it a Snakemake log?")
    if started:
        print(f"note: {len(started)} job(s) started but never finished: "
              f"{sorted(j['rule'] for j in started.values())}", file=sys.stderr)
    return jobs, (last - first).total_seconds()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("log", nargs="?", help="a Snakemake log (default: the newest under .snakemake/log)")
    ap.add_argument("--json", help="write the jobs and per-stage sums here")
    args = ap.parse_args()
    if args.log is None:
        logs = sorted(Path(".snakemake/log").glob("*.snakemake.log"))
        if not logs:
            ap.error("no log under .snakemake/log: run Snakemake first, or give a log's path")
        log = logs[-1]
    else:
        log = Path(args.log)
        if not log.is_file():
            ap.error(f"no such log: {log}")
    try:
        jobs, wall = parse(log)
    except ValueError as err:
        ap.error(str(err))
    per_rule: dict[str, list[float]] = defaultdict(list)
    for job in jobs:
        per_rule[job["rule"]].append(job["seconds"])
    print(f"{log}: {len(jobs)} jobs, wall {wall / 60:.1f} min")
    print("| stage | jobs | total, min | per job, min (min–max) | share of job time |")
    print("|---|---|---|---|---|")
    busy = sum(job["seconds"] for job in jobs) or 1.0
    for rule, secs in sorted(per_rule.items(), key=lambda kv: -sum(kv[1])):
        print(f"| {rule} | {len(secs)} | {sum(secs) / 60:.1f} | {sum(secs) / len(secs) / 60:.2f} "
              f"({min(secs) / 60:.2f}–{max(secs) / 60:.2f}) | {100 * sum(secs) / busy:.0f} % |")
    if args.json:
        out = {"log": str(log), "wall_seconds": wall,
               "jobs": [{**j, "start": j["start"].isoformat(), "end": j["end"].isoformat()} for j in jobs],
               "per_stage_seconds": {r: sum(s) for r, s in per_rule.items()}}
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
