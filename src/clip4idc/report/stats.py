"""Paired t-test between two variants over seeds: is a difference in a caption metric more than seed noise?

Why a test at all: one run per variant says little. The authors' own README shows CLEVR-Change CIDEr
from 131.2 to 149.2 across 8 seeds of the same system (PAPER.md section 6), a spread larger than
many of the differences an ablation is read for. Why paired: runs are paired by seed, and the same
seed gives both variants the same data order and captioner initialisation, so the difference
within a seed removes the part of the noise both variants share. The test is
`scipy.stats.ttest_rel`, two-sided, on the per-seed differences a - b of one metric (raw
pycocoevalcap scale).

Limits, printed with the table too: with the default 3 seeds the test has 2 degrees of freedom, so
it has little power (a real difference can well give p > 0.05) and p is coarse; it assumes the
per-seed differences are normally distributed, which 3 values cannot check. It says nothing
about other datasets or about the spread over test pairs (each run is scored as one corpus).
With one seed, or when every seed gives the same difference (sd 0, t undefined; e.g. two variants
that produce the same captions), there is no test: `t` and `p` are None and `reason` says why.
NaN never appears in the result.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import mean, stdev
from typing import Mapping, Sequence

from scipy.stats import ttest_rel

from . import is_finite_number

ONE_SEED = "one seed"
IDENTICAL = "identical differences"
# Differences closer than this (raw scale, where the report prints 1e-4) are the same difference:
# float noise in a - b must not turn "sd 0" into a huge t and p = 0.
_SAME = 1e-12


@dataclass(frozen=True)
class PairedTest:
    """`metric` of variant `a` minus variant `b`, paired by seed; differences on the raw scale."""
    a: str
    b: str
    metric: str
    seeds: tuple          # the paired seeds, in sorted order
    n: int                # number of seeds (pairs of runs)
    mean_diff: float      # mean over seeds of a - b (equals mean(a) - mean(b))
    sd_diff: float | None  # sample sd of the differences; None with one seed
    t: float | None       # None with `reason`
    p: float | None       # two-sided; None with `reason`
    reason: str | None = None  # ONE_SEED or IDENTICAL when there is no test, else None


def _by_seed(runs: Sequence[Mapping], variant: str, metric: str) -> dict:
    values = {}
    for run in runs:
        seed = run["seed"]
        if seed in values:
            raise ValueError(f"variant {variant!r}: two runs with seed {seed!r}; a paired test needs one run per seed")
        value = run["metrics"][metric]
        if not is_finite_number(value):
            raise ValueError(f"variant {variant!r}, seed {seed!r}: metric {metric!r} must be a finite number, "
                             f"got {value!r}")
        values[seed] = float(value)
    return values


def paired_test(a_runs: Sequence[Mapping], b_runs: Sequence[Mapping], metric: str, *,
                a: str = "a", b: str = "b") -> PairedTest:
    """Paired t-test of `metric` between variants `a` and `b` (their metric-file contents, one per seed).

    Runs are matched by `seed`, not by position; both variants must have been run with the same
    seeds, else ValueError naming both variants and their seeds.
    """
    if not a_runs or not b_runs:
        raise ValueError(f"paired test {a!r} vs {b!r}: each variant needs at least one run, "
                         f"got {len(a_runs)} and {len(b_runs)}")
    va, vb = _by_seed(a_runs, a, metric), _by_seed(b_runs, b, metric)
    if set(va) != set(vb):
        raise ValueError(f"paired test {a!r} vs {b!r}: the variants were run with different seeds "
                         f"({sorted(va, key=str)} vs {sorted(vb, key=str)}); pairing by seed needs the same seeds")
    seeds = tuple(sorted(va, key=str))
    diffs = [va[s] - vb[s] for s in seeds]
    common = dict(a=a, b=b, metric=metric, seeds=seeds, n=len(seeds), mean_diff=mean(diffs))
    if len(diffs) < 2:
        return PairedTest(**common, sd_diff=None, t=None, p=None, reason=ONE_SEED)
    if max(diffs) - min(diffs) <= _SAME:
        return PairedTest(**common, sd_diff=0.0, t=None, p=None, reason=IDENTICAL)
    result = ttest_rel([va[s] for s in seeds], [vb[s] for s in seeds], alternative="two-sided")
    t, p = float(result.statistic), float(result.pvalue)
    if not (math.isfinite(t) and math.isfinite(p)):  # guarded above; never let NaN reach a table
        raise ArithmeticError(f"paired test {a!r} vs {b!r} on {metric}: scipy gave t={t}, p={p} "
                              f"for differences {diffs}")
    return PairedTest(**common, sd_diff=stdev(diffs), t=t, p=p)
