"""The error analysis's confusion figure: values drawn equal the inputs, legible, inputs validated, files
deterministic."""
from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
from test_plots import assert_legible, assert_written

from clip4idc.report import VARIANT_LABELS
from clip4idc.report.analysis_plots import SHARE_LABEL, confusion_plot

TRUE = ["color", "material", "add", "drop", "move", "none"]
PRED = [*TRUE, "unparsed"]
VARIANTS = list(VARIANT_LABELS)


def confusion(seed: int, scale: int = 1, empty_rows: tuple[int, ...] = ()) -> dict:
    """Counts that differ per seed and cell, so a wrong sum or a transposed cell shows."""
    counts = [[0 if i in empty_rows else scale * ((3 * i + 5 * j + 7 * seed) % 11 + (20 if i == j else 0))
               for j in range(len(PRED))] for i in range(len(TRUE))]
    return {"true": list(TRUE), "predicted": list(PRED), "counts": counts}


def runs(variants, n_seeds, **kw) -> dict:
    return {v: [confusion(s + 3 * k, **kw) for s in range(n_seeds)] for k, v in enumerate(variants)}


def drawn_counts(ax) -> np.ndarray:
    """The numbers printed in the cells, as a matrix (-1 where nothing is printed)."""
    out = np.full((len(TRUE), len(PRED)), -1)
    for t in ax.texts:
        if t.get_gid() == "count":
            x, y = t.get_position()
            out[round(y), round(x)] = int(t.get_text())
    return out


def expected(seeds) -> tuple[np.ndarray, np.ma.MaskedArray]:
    counts = np.sum([s["counts"] for s in seeds], axis=0)
    totals = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = counts / totals
    return counts, np.ma.masked_invalid(shares)


def plot(tmp_path, confusions, **kw):
    return confusion_plot(confusions, tmp_path / "c.png", tmp_path / "c.pdf", **kw)


@pytest.mark.parametrize("n_seeds", [1, 3])
@pytest.mark.parametrize("variants", [["adapt"], VARIANTS, ["adapt", "clip-ft"]])
def test_values_drawn_equal_inputs(tmp_path, n_seeds, variants):
    confusions = runs(variants, n_seeds)
    fig = plot(tmp_path, confusions, title="Synthetic confusions")
    assert_written(tmp_path / "c.png", tmp_path / "c.pdf")
    axes = [ax for ax in fig.axes if ax.images]
    order = [v for v in VARIANT_LABELS if v in variants]  # VARIANT_LABELS order, whatever the input's
    assert len(axes) == len(order)
    for k, (ax, variant) in enumerate(zip(axes, order)):
        counts, shares = expected(confusions[variant])
        assert (drawn_counts(ax) == counts).all()
        array = ax.images[0].get_array()
        np.testing.assert_allclose(array.filled(np.nan), shares.filled(np.nan))
        assert ax.images[0].get_clim() == (0.0, 1.0)  # the same scale in every panel
        assert ax.get_title() == VARIANT_LABELS[variant] + (f"\n({n_seeds} seeds)" if n_seeds > 1 else "")
        assert [t.get_text() for t in ax.get_xticklabels()] == PRED
        # Rows are the same in every panel: named once, on the left.
        assert [t.get_text() for t in ax.get_yticklabels()] == (TRUE if k == 0 else [])
        assert ax.get_xlabel() == "caption's change type"
        assert ax.get_ylabel() == ("true change type" if k == 0 else "")
        # Correct cells (labels match) are outlined and their numbers bold; "unparsed" sits behind a line.
        outlined = sorted((round(p.get_y() + p.get_height() / 2), round(p.get_x() + p.get_width() / 2))
                          for p in ax.patches if p.get_gid() == "diagonal")
        assert outlined == [(i, i) for i in range(len(TRUE))]
        bold = sorted((round(t.get_position()[1]), round(t.get_position()[0])) for t in ax.texts
                      if t.get_gid() == "count" and t.get_fontweight() == "bold")
        assert bold == outlined
        assert [line.get_xdata()[0] for line in ax.lines if line.get_gid() == "apart"] == [len(TRUE) - 0.5]
    assert fig.get_suptitle() == "Synthetic confusions"
    colorbars = [ax for ax in fig.axes if not ax.images]
    assert len(colorbars) == 1 and colorbars[0].get_ylabel() == SHARE_LABEL


def test_default_title_and_width_scales_with_panels(tmp_path):
    one = plot(tmp_path, runs(["adapt"], 1))
    three = plot(tmp_path, runs(VARIANTS, 1))
    assert one.get_suptitle() == three.get_suptitle() == "Change type: true vs caption"
    assert 9 <= three.get_figwidth() <= 11
    assert one.get_figwidth() < three.get_figwidth() / 2


def test_rows_without_pairs_are_blank_and_quiet(tmp_path):
    confusions = runs(VARIANTS, 2, empty_rows=(2, 5))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = plot(tmp_path, confusions)
    for ax in (ax for ax in fig.axes if ax.images):
        array = ax.images[0].get_array()
        assert list(np.ma.getmaskarray(array).all(axis=1)) == [i in (2, 5) for i in range(len(TRUE))]
        assert not np.isnan(array.data).any()
        # No numbers in an empty row, one note instead.
        assert (drawn_counts(ax)[[2, 5]] == -1).all()
        assert sorted(round(t.get_position()[1]) for t in ax.texts if t.get_gid() == "empty-row") == [2, 5]
        outlined = sorted(round(p.get_y() + p.get_height() / 2) for p in ax.patches if p.get_gid() == "diagonal")
        assert outlined == [0, 1, 3, 4]
    assert_legible(fig)


@pytest.mark.parametrize("variants", [["no-adapt"], VARIANTS])
@pytest.mark.parametrize("scale", [1, 250, 40_000])  # up to 3 seeds x 7-digit counts
def test_legible_with_large_counts(tmp_path, variants, scale):
    fig = plot(tmp_path, runs(variants, 3, scale=scale, empty_rows=(4,)))
    assert_legible(fig)


def test_same_inputs_same_bytes(tmp_path):
    confusions = runs(VARIANTS, 3)
    files = []
    for name in ("a", "b"):
        png, pdf = tmp_path / f"{name}.png", tmp_path / f"{name}.pdf"
        confusion_plot(confusions, png, pdf)
        files.append((png.read_bytes(), pdf.read_bytes()))
    assert files[0] == files[1]


def _edit(path, value):
    """A mutation of runs(VARIANTS, 2): counts[...] or a key of adapt's seed 1."""
    def apply(c):
        target = c["adapt"][1]
        *keys, last = path
        for key in keys:
            target = target[key]
        target[last] = value
        return c
    return apply


def _seed(value):
    """A mutation of runs(VARIANTS, 2): adapt's seed 1 replaced by `value`."""
    def apply(c):
        c["adapt"][1] = value
        return c
    return apply


BAD = {
    "missing row": (_edit(["counts"], confusion(0)["counts"][:-1]), "list of 6 rows"),
    "short row": (_edit(["counts", 3], [1] * 6), r"counts\[3\] must be a list of 7 counts"),
    "counts not a list": (_edit(["counts"], "many"), "list of 6 rows"),
    "negative": (_edit(["counts", 2, 4], -1), r"counts\[2\]\[4\] must be a non-negative integer, got -1"),
    "bool": (_edit(["counts", 0, 0], True), r"counts\[0\]\[0\] must be a non-negative integer, got True"),
    "float": (_edit(["counts", 1, 6], 3.0), r"counts\[1\]\[6\] must be a non-negative integer, got 3.0"),
    "nan": (_edit(["counts", 1, 6], float("nan")), r"counts\[1\]\[6\] must be a non-negative integer"),
    "label not str": (_edit(["true", 0], 1), "'true' must be a non-empty list of distinct strings"),
    "duplicate label": (_edit(["predicted", 6], "color"), "'predicted' must be a non-empty list of distinct"),
    "no labels": (_edit(["true"], []), "'true' must be a non-empty list"),
    "missing key": (_seed({k: v for k, v in confusion(0).items() if k != "counts"}),
                    "keys 'true', 'predicted' and 'counts'"),
    "not an object": (_seed([1, 2]), "keys 'true', 'predicted' and 'counts'"),
    "labels differ between seeds": (_edit(["predicted"], PRED[:-1] + ["other"]),
                                    r"differ from those of confusions\['clip-ft'\]\[0\].*same labels"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_validation_names_the_offender(tmp_path, case):
    mutate, message = BAD[case]
    confusions = mutate(copy.deepcopy(runs(VARIANTS, 2)))
    with pytest.raises(ValueError, match=message) as err:
        plot(tmp_path, confusions)
    assert "confusions['adapt'][1] (seed index 1)" in str(err.value)
    assert not (tmp_path / "c.png").exists()


def test_validation_labels_differ_between_variants(tmp_path):
    confusions = runs(VARIANTS, 1)
    for seed in confusions["no-adapt"]:
        seed["true"] = ["colour", *TRUE[1:]]
    with pytest.raises(ValueError, match=r"confusions\['no-adapt'\]\[0\] \(seed index 0\): labels "
                                         r"true=\['colour'.*differ from those of confusions\['clip-ft'\]\[0\]"):
        plot(tmp_path, confusions)


@pytest.mark.parametrize("confusions, message", [
    ({}, "expected {variant: \\[confusion per seed\\]}"),
    ([confusion(0)], "expected {variant: \\[confusion per seed\\]}"),
    ({"adapt": [confusion(0)], "oracle": [confusion(1)]}, r"unknown variant names \['oracle'\]"),
    ({"adapt": []}, r"confusions\['adapt'\]: expected a non-empty list of confusions, one per seed"),
    ({"adapt": confusion(0)}, r"confusions\['adapt'\]: expected a non-empty list of confusions"),
])
def test_validation_of_the_mapping(tmp_path, confusions, message):
    with pytest.raises(ValueError, match=message):
        plot(tmp_path, confusions)
