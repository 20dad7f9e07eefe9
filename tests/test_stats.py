"""The paired t-test between two variants over seeds (clip4idc.report.stats)."""
from __future__ import annotations

import dataclasses
import math
import random

import pytest
from scipy import stats as scipy_stats

from clip4idc.report.stats import IDENTICAL, ONE_SEED, PairedTest, paired_test


def runs(variant, cider_by_seed):
    return [{"variant": variant, "seed": seed, "split": "test", "n_pairs": 40,
             "metrics": {"CIDEr": value, "BLEU-4": value / 3}} for seed, value in cider_by_seed.items()]


A = {2021: 1.40, 2022: 1.31, 2023: 1.52, 2024: 1.45}
B = {2021: 1.22, 2022: 1.25, 2023: 1.30, 2024: 1.41}


def test_matches_hand_computation():
    d = [A[s] - B[s] for s in sorted(A)]  # 0.18, 0.06, 0.22, 0.04
    n = len(d)
    m = sum(d) / n
    sd = math.sqrt(sum((x - m) ** 2 for x in d) / (n - 1))
    t = m / (sd / math.sqrt(n))
    p = 2 * scipy_stats.t.sf(abs(t), df=n - 1)  # two-sided, from the t distribution itself
    result = paired_test(runs("adapt", A), runs("no-adapt", B), "CIDEr", a="adapt", b="no-adapt")
    assert isinstance(result, PairedTest)
    assert (result.a, result.b, result.metric, result.n) == ("adapt", "no-adapt", "CIDEr", 4)
    assert result.seeds == (2021, 2022, 2023, 2024)
    assert result.mean_diff == pytest.approx(0.125)
    assert result.sd_diff == pytest.approx(sd)
    assert result.t == pytest.approx(t) and result.t == pytest.approx(2.8247, abs=1e-4)
    assert result.p == pytest.approx(p) and 0.05 < result.p < 0.07
    assert result.reason is None
    # the sign follows a - b
    flipped = paired_test(runs("no-adapt", B), runs("adapt", A), "CIDEr")
    assert flipped.t == pytest.approx(-t) and flipped.p == pytest.approx(p)
    assert flipped.mean_diff == pytest.approx(-0.125)


def test_textbook_example():
    # Student's sleep data (Cushny & Peebles), as in R's t.test(extra ~ group, paired = TRUE):
    # t = -4.0621, df = 9, p-value = 0.002833.
    g1 = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0]
    g2 = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4]
    a = runs("adapt", dict(enumerate(g1)))
    b = runs("clip-ft", dict(enumerate(g2)))
    result = paired_test(a, b, "CIDEr")
    assert result.t == pytest.approx(-4.0621, abs=1e-4)
    assert result.p == pytest.approx(0.002833, abs=1e-6)
    assert result.mean_diff == pytest.approx(-1.58)


def test_pairs_by_seed_not_by_position():
    shuffled = runs("no-adapt", B)
    random.Random(0).shuffle(shuffled)
    assert [r["seed"] for r in shuffled] != sorted(B)
    in_order = paired_test(runs("adapt", A), runs("no-adapt", B), "CIDEr")
    assert paired_test(runs("adapt", A)[::-1], shuffled, "CIDEr") == in_order
    # pairing by position would give another t: this is what the test guards against
    by_position = scipy_stats.ttest_rel([r["metrics"]["CIDEr"] for r in runs("adapt", A)],
                                        [r["metrics"]["CIDEr"] for r in shuffled])
    assert not math.isclose(float(by_position.statistic), in_order.t)


def test_other_metric_is_used():
    result = paired_test(runs("adapt", A), runs("no-adapt", B), "BLEU-4")
    assert result.mean_diff == pytest.approx(0.125 / 3)
    assert result.p == pytest.approx(paired_test(runs("adapt", A), runs("no-adapt", B), "CIDEr").p)


def test_different_seeds_is_an_error_naming_both_variants():
    other = dict(B)
    other[2030] = other.pop(2024)
    with pytest.raises(ValueError, match=r"'adapt' vs 'clip-ft'.*different seeds.*2024.*2030"):
        paired_test(runs("adapt", A), runs("clip-ft", other), "CIDEr", a="adapt", b="clip-ft")
    with pytest.raises(ValueError, match=r"'adapt' vs 'clip-ft'.*different seeds"):
        paired_test(runs("adapt", A), runs("clip-ft", {2021: 1.0}), "CIDEr", a="adapt", b="clip-ft")


def test_duplicate_seed_and_empty_are_errors():
    twice = runs("adapt", A) + runs("adapt", {2021: 1.0})
    with pytest.raises(ValueError, match=r"variant 'adapt': two runs with seed 2021"):
        paired_test(twice, runs("no-adapt", B), "CIDEr", a="adapt")
    with pytest.raises(ValueError, match="at least one run"):
        paired_test([], runs("no-adapt", B), "CIDEr")
    with pytest.raises(ValueError, match=r"seed 2021.*finite"):
        paired_test(runs("adapt", {2021: float("nan")}), runs("no-adapt", {2021: 1.0}), "CIDEr", a="adapt")


def test_one_seed_gives_no_test():
    result = paired_test(runs("adapt", {7: 1.4}), runs("no-adapt", {7: 1.2}), "CIDEr")
    assert (result.t, result.p, result.reason, result.n, result.sd_diff) == (None, None, ONE_SEED, 1, None)
    assert result.reason == "one seed"
    assert result.mean_diff == pytest.approx(0.2)


@pytest.mark.parametrize("shift", [0.0, 0.1])
def test_identical_differences_give_no_test(shift):
    # shift 0: two variants that wrote the same captions; shift 0.1: a constant offset. scipy alone
    # gives NaN or an infinite t for these; the test must give None with the reason instead.
    b = {s: v - shift for s, v in A.items()}
    result = paired_test(runs("adapt", A), runs("no-adapt", b), "CIDEr")
    assert (result.t, result.p, result.reason) == (None, None, IDENTICAL)
    assert result.reason == "identical differences"
    assert result.sd_diff == 0.0 and result.mean_diff == pytest.approx(shift)
    assert not any(isinstance(v, float) and math.isnan(v) for v in dataclasses.astuple(result))


def test_result_is_frozen():
    result = paired_test(runs("adapt", A), runs("no-adapt", B), "CIDEr")
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.p = 0.0
