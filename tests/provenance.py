"""Every decimal a table may print, derived from the metric files and analysis files alone (and published.py).

A printed number outside this set was not read from the run's files: hard-coded, mis-scaled or stale.
"""
from __future__ import annotations

import re
from itertools import permutations
from statistics import mean, stdev
from typing import Mapping

from clip4idc.metrics.caption import METRIC_KEYS
from clip4idc.report.published import CAPTIONING, RETRIEVAL, SEED_SPREAD
from clip4idc.report.stats import paired_test

DECIMAL = re.compile(r"\d+\.\d+")


def _sets(run: Mapping) -> list[Mapping]:
    return [run["metrics"], *(s["metrics"] for s in (run.get("subsets") or {}).values())]


def _percent_decimals(values: list[float | None]) -> set[str]:
    if any(v is None for v in values):
        return set()
    out = {f"{100 * v:.1f}" for v in values} | {f"{100 * mean(values):.1f}"}
    return out | ({f"{100 * stdev(values):.1f}"} if len(values) > 1 else set())


def analysis_decimals(analyses: Mapping[str, list[dict]], others: Mapping[str, Mapping] = ()) -> set[str]:
    """The error analysis's tables (per cent, 1 decimal): per variant the failure rates, the share of change pairs
    given the right type and the wrong-attribute shares, each run's, mean and sd over seeds; `others` (constant,
    released) one run each. Computed here from the counts, independently of report/failures.py."""
    allowed = set()
    groups = [*analyses.values(), *([a] for a in dict(others).values())]
    for group in groups:
        counts = [a["counts"] for a in group]
        for failure, base in (("right", "n_change"), ("missed", "n_change"), ("hallucinated", "n_no_change"),
                              ("wrong_type", "n_change"), ("wrong_object", "n_change"), ("unparsed", "n_change")):
            if all(failure in c and c[base] for c in counts):
                allowed |= _percent_decimals([c[failure] / c[base] for c in counts])
        if all("wrong_attributes" in a for a in group):
            wrong = [a["wrong_attributes"] for a in group]
            allowed |= _percent_decimals([w["n_right_type"] / c["n_change"] for w, c in zip(wrong, counts)])
            for key in ("size", "color", "material", "shape", "new"):
                if all(w["n_right_type"] for w in wrong):
                    allowed |= _percent_decimals([w[key] / w["n_right_type"] for w in wrong])
    return allowed


def allowed_decimals(runs: Mapping[str, list[dict]], baseline: Mapping | None = None,
                     retrieval: Mapping | None = None, analyses: Mapping[str, list[dict]] | None = None,
                     analysis_others: Mapping[str, Mapping] = ()) -> set[str]:
    """Per run and pair set: values, means and sds over seeds (×100, 2 decimals); paired differences and
    p values between every two variants; retrieval numbers; every published number and its source's; with
    `analyses`, the error analysis's per-cent figures (`analysis_decimals`)."""
    allowed = {"0.001"}  # p below 0.001 prints as "<0.001"
    if analyses is not None:
        allowed |= analysis_decimals(analyses, analysis_others)
    groups = [*runs.values(), *([[baseline]] if baseline else [])]
    for group in groups:
        for i in range(len(_sets(group[0]))):
            for key in METRIC_KEYS:
                vals = [_sets(run)[i][key] for run in group]
                allowed |= {f"{100 * v:.2f}" for v in vals} | {f"{100 * mean(vals):.2f}"}
                if len(vals) > 1:
                    allowed.add(f"{100 * stdev(vals):.2f}")
    for a, b in permutations(runs, 2):
        for key in METRIC_KEYS:
            test = paired_test(runs[a], runs[b], key)
            allowed.add(f"{abs(100 * test.mean_diff):.2f}")
            if test.p is not None:
                allowed.add(f"{test.p:.3f}")
    if retrieval is not None:
        for block in ("t2p", "p2t"):
            allowed |= {f"{v:.2f}" for v in retrieval[block].values()}
            allowed |= {f"{v:.1f}" for v in retrieval[block].values()}
    for item in [*CAPTIONING.values(), *RETRIEVAL.values(), *(s for d in SEED_SPREAD.values() for s in d.values())]:
        allowed |= set(DECIMAL.findall(item.source))
        numbers = [*getattr(item, "metrics", {}).values(), *getattr(item, "t2p", {}).values(),
                   *getattr(item, "p2t", {}).values(), *(getattr(item, a, None) for a in ("mean", "sd", "min", "max"))]
        allowed |= {str(float(x)) for x in numbers if x is not None}
    return allowed


def printed_decimals(tex: str) -> set[str]:
    return set(DECIMAL.findall(tex))
