"""Every decimal a table may print, derived from the metric files alone (and published.py).

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


def allowed_decimals(runs: Mapping[str, list[dict]], baseline: Mapping | None = None,
                     retrieval: Mapping | None = None) -> set[str]:
    """Per run and pair set: values, means and sds over seeds (×100, 2 decimals); paired differences and
    p values between every two variants; retrieval numbers; every published number and its source's."""
    allowed = {"0.001"}  # p below 0.001 prints as "<0.001"
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
