"""The report's figures: files written, values plotted equal the inputs, and every figure legible.

Legible = no two text artists (tick labels, axis labels, titles, legend entries, value labels,
caption lines) overlap once drawn, and all text lies inside the figure.
"""
from __future__ import annotations

import itertools
from statistics import mean, stdev

import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.container import BarContainer
from matplotlib.figure import Figure
from matplotlib.transforms import Bbox
from PIL import Image

from clip4idc.metrics.caption import METRIC_KEYS
from clip4idc.report import METRIC_LABELS, VARIANT_LABELS
from clip4idc.report.plots import PNG_DPI, ablation_plot, per_type_plot, retrieval_plot, training_curves_plot
from clip4idc.report.published import RETRIEVAL
from clip4idc.report.qualitative import qualitative_examples, qualitative_plot

VARIANTS = ("clip-ft", "no-adapt", "adapt")
BASE = {"clip-ft": [0.7012, 0.5833, 0.4711, 0.3821, 0.3567, 0.65501, 0.98612],
        "no-adapt": [0.7684, 0.6521, 0.5412, 0.4473, 0.3312, 0.70123, 1.21455],
        "adapt": [0.8011, 0.6977, 0.5903, 0.4952, 0.3521, 0.70124, 1.38731]}
CONSTANT = [0.4023, 0.3011, 0.2122, 0.1411, 0.1733, 0.3891, 0.1121]
TYPES5 = {"color": 9, "material": 8, "add": 8, "drop": 7, "move": 8}
WORDS = ("the small shiny red sphere that was behind the large gray rubber cube on the left side of the "
         "scene has been moved to the front right corner near the yellow cylinder").split()
LONG = " ".join(WORDS[:25])


# -- the legibility check -----------------------------------------------------------------------
def _texts(fig: Figure) -> list:
    """Every visible, non-empty text artist that gets drawn: figure texts (suptitle), legends, and per
    axes the titles, axis labels, annotations / bar labels and the tick labels inside the view."""
    out = list(fig.texts)
    for legend in fig.legends:
        out += [*legend.get_texts(), legend.get_title()]
    for ax in fig.axes:
        out += [ax.title, ax._left_title, ax._right_title, ax.xaxis.label, ax.yaxis.label, *ax.texts]
        if ax.get_legend() is not None:
            out += [*ax.get_legend().get_texts(), ax.get_legend().get_title()]
        for axis, limits in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
            lo, hi = sorted(limits)
            eps = 1e-9 * max(1.0, abs(hi - lo))
            for loc, tick in zip(axis.get_majorticklocs(), axis.get_major_ticks()):
                if lo - eps <= loc <= hi + eps:
                    out += [tick.label1, tick.label2]
    return [t for t in out if t.get_visible() and t.get_text().strip()]


def assert_legible(fig: Figure, tolerance: float = 0.5) -> None:
    """Fail if two drawn texts overlap or a text leaves the figure (window extents, in pixels)."""
    fig.set_dpi(PNG_DPI)
    FigureCanvasAgg(fig)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in _texts(fig)]

    def where(b: Bbox) -> tuple:
        return tuple(round(float(v)) for v in b.extents)

    assert boxes, "no text drawn"
    page = fig.bbox
    outside = [(s, where(b)) for s, b in boxes
               if b.x0 < page.x0 - 1 or b.y0 < page.y0 - 1 or b.x1 > page.x1 + 1 or b.y1 > page.y1 + 1]
    assert not outside, f"text outside the figure {where(page)}: {outside}"

    def shrunk(b: Bbox) -> Bbox:
        return Bbox.from_extents(b.x0 + tolerance, b.y0 + tolerance, b.x1 - tolerance, b.y1 - tolerance)

    clashes = [(a, where(ba), b, where(bb)) for (a, ba), (b, bb) in itertools.combinations(boxes, 2)
               if shrunk(ba).overlaps(shrunk(bb))]
    assert not clashes, f"{len(clashes)} overlapping text pair(s), e.g. {clashes[:5]}"


def test_legibility_check_can_fail():
    fig = Figure(figsize=(3, 2), layout="constrained")
    ax = fig.subplots()
    ax.set_title("a title")
    ax.text(0.5, 0.5, "one text", transform=ax.transAxes)
    ax.text(0.52, 0.5, "another text", transform=ax.transAxes)
    with pytest.raises(AssertionError, match="overlapping"):
        assert_legible(fig)
    fig = Figure(figsize=(3, 2))
    fig.text(0.9, 0.5, "runs off the right edge of the figure")
    with pytest.raises(AssertionError, match="outside the figure"):
        assert_legible(fig)


def assert_written(png, pdf) -> None:
    with Image.open(png) as im:
        im.load()
        assert im.width > 300 and im.height > 200
    assert pdf.read_bytes().startswith(b"%PDF")


# -- inputs -------------------------------------------------------------------------------------
def metric_file(variant, values, seed=2021, types=None, n_pairs=80):
    """A metric file; with `types` ({type: n pairs}) the per-set scores of the breakdown too."""
    content = {"variant": variant, "seed": seed, "split": "test", "n_pairs": n_pairs,
               "metrics": dict(zip(METRIC_KEYS, values))}
    if types is not None:
        n_change = sum(types.values())
        sets = {"change": n_change, "no-change": n_pairs - n_change, **types}
        content["subsets"] = {name: {"n_pairs": n, "metrics": {k: v * (0.5 + 0.1 * j) for k, v in
                                                               zip(METRIC_KEYS, values)}}
                              for j, (name, n) in enumerate(sets.items())}
    return content


def seeded(n_seeds, types=None):
    return {v: [metric_file(v, [x * (1 + 0.03 * s) for x in BASE[v]], seed=2021 + s, types=types)
                for s in range(n_seeds)] for v in VARIANTS}


def bars_by_label(ax) -> dict[str, BarContainer]:
    return {c.get_label(): c for c in ax.containers if isinstance(c, BarContainer)}


# -- ablation -----------------------------------------------------------------------------------
@pytest.mark.parametrize("n_seeds", [1, 3])
def test_ablation_plot(tmp_path, n_seeds):
    variants = seeded(n_seeds)
    png, pdf = tmp_path / "ablation.png", tmp_path / "ablation.pdf"
    fig = ablation_plot(variants, metric_file("constant", CONSTANT, seed=None), png, pdf,
                        title="Ablation on synthetic CLEVR-Change-format data")
    assert_written(png, pdf)
    assert_legible(fig)
    ax_small, ax_large = fig.axes
    small = [k for k in METRIC_KEYS if k != "CIDEr"]
    assert [t.get_text() for t in ax_small.get_xticklabels()] == [METRIC_LABELS[k] for k in small]
    for variant in VARIANTS:
        runs = [r["metrics"] for r in variants[variant]]
        for ax, keys in ((ax_small, small), (ax_large, ["CIDEr"])):
            bars = bars_by_label(ax)[VARIANT_LABELS[variant]]
            heights = [p.get_height() for p in bars.patches]
            assert heights == pytest.approx([100 * mean(r[k] for r in runs) for k in keys])
            # Error bars only where several seeds give a spread.
            assert (bars.errorbar is not None) == (n_seeds > 1)
            # Each value is printed above its error bar, not across it.
            tops = [h + (100 * stdev(r[k] for r in runs) if n_seeds > 1 else 0) for h, k in zip(heights, keys)]
            xs = [p.get_x() + p.get_width() / 2 for p in bars.patches]
            printed = {round(a.xy[0], 6): a for a in ax.texts}
            assert [printed[round(x, 6)].xy[1] for x in xs] == pytest.approx(tops)
            assert [printed[round(x, 6)].get_text() for x in xs] == [f"{h:.1f}" for h in heights]
    # The baseline is drawn at its value.
    segments = [seg for coll in ax_large.collections for seg in coll.get_segments()]
    assert any(seg[0][1] == pytest.approx(100 * CONSTANT[-1]) for seg in segments)


# -- training curves ----------------------------------------------------------------------------
def history(variant, seed, losses, scores, selected):
    return {"variant": variant, "seed": seed, "selected_on": "val", "select_metric": "CIDEr",
            "selected_epoch": selected,
            "history": [{"epoch": e + 1, "loss": loss, "val": {**{k: 0.3 for k in METRIC_KEYS}, "CIDEr": score}}
                        for e, (loss, score) in enumerate(zip(losses, scores))]}


def adapt_history(n_epochs=12, selected=9):
    return {"selected_epoch": selected, "history": [
        {"epoch": e, "loss": 3.0 * 0.9 ** e,
         "val": {"n_pairs": 50, "n_texts": 250,
                 "t2p": {"R@1": 2.0 * e, "R@5": 5.0 * e, "R@10": 6.0 * e, "MedR": 9.0, "MeanR": 14.0},
                 "p2t": {"R@1": 3.0 * e, "R@5": 6.0 * e, "R@10": 7.0 * e, "MedR": 7.0, "MeanR": 11.0}}}
        for e in range(1, n_epochs + 1)]}


def finetune_runs(n_seeds):
    """Seeds stop at different epochs (early stopping): 20, 14 and 17 epochs."""
    lengths, selected = [20, 14, 17][:n_seeds], [15, 9, 12][:n_seeds]
    return {v: [history(v, 2021 + s, [10 * 0.85 ** e + 0.1 * i + 0.05 * s for e in range(n)],
                        [min(1.4, 0.1 * (e + 1)) + 0.02 * s + 0.01 * i for e in range(n)], sel)
                for s, (n, sel) in enumerate(zip(lengths, selected))]
            for i, v in enumerate(VARIANTS)}


def stars(ax):
    return [line for line in ax.lines if line.get_marker() == "*"]


@pytest.mark.parametrize("n_seeds", [1, 3])
@pytest.mark.parametrize("with_adapt", [True, False])
def test_training_curves_plot(tmp_path, n_seeds, with_adapt):
    runs = finetune_runs(n_seeds)
    png, pdf = tmp_path / "training.png", tmp_path / "training.pdf"
    fig = training_curves_plot(runs, adapt_history() if with_adapt else None, png, pdf, title="Training on data")
    assert_written(png, pdf)
    assert_legible(fig)
    assert len(fig.axes) == (4 if with_adapt else 2)
    ax_loss, ax_score = fig.axes[:2]
    assert "epoch" == ax_loss.get_xlabel() == ax_score.get_xlabel()
    assert "cross-entropy" in ax_loss.get_ylabel() and "×100" in ax_score.get_ylabel()
    for ax in fig.axes:
        lo, hi = ax.get_xlim()
        assert all(float(t).is_integer() for t in ax.get_xticks() if lo <= t <= hi)
    for variant in VARIANTS:
        line = next(ln for ln in ax_loss.lines if ln.get_label() == VARIANT_LABELS[variant])
        histories = [r["history"] for r in runs[variant]]
        # Mean over the runs that reached each epoch (shorter runs drop out).
        expected = [mean(h[e]["loss"] for h in histories if len(h) > e) for e in range(max(map(len, histories)))]
        assert list(line.get_ydata()) == pytest.approx(expected)
        assert [round(x) for x in line.get_xdata()] == list(range(1, len(expected) + 1))
    # One star per run at its selected epoch, on its own value.
    for ax, key in ((ax_loss, "loss"), (ax_score, "CIDEr")):
        marks = stars(ax)
        assert len(marks) == 3 * n_seeds
        expected = sorted((r["selected_epoch"], r["history"][r["selected_epoch"] - 1][key] if key == "loss"
                           else 100 * r["history"][r["selected_epoch"] - 1]["val"][key])
                          for v in VARIANTS for r in runs[v])
        got = sorted((round(m.get_xdata()[0]), m.get_ydata()[0]) for m in marks)
        assert [e for e, _ in got] == [e for e, _ in expected]
        assert [y for _, y in got] == pytest.approx([y for _, y in expected])
    # A ±sd band only where several seeds reached an epoch.
    assert bool(ax_loss.collections) == (n_seeds > 1)
    if with_adapt:
        ax_aloss, ax_r1 = fig.axes[2:]
        assert len(stars(ax_aloss)) == len(stars(ax_r1)) == 1
        assert stars(ax_r1)[0].get_xdata()[0] == 9 and stars(ax_r1)[0].get_ydata()[0] == pytest.approx(18.0)
        assert ax_r1.get_ylim() == (0, 100) and "%" in ax_r1.get_ylabel()


def test_training_curves_single_epoch_shows_error_bars(tmp_path):
    """With one epoch a band has no width: the spread is drawn as an error bar instead."""
    runs = {"adapt": [history("adapt", s, [20.0 + s], [0.5 + 0.1 * s], 1) for s in range(3)]}
    fig = training_curves_plot(runs, adapt_history(1, 1), tmp_path / "t.png", tmp_path / "t.pdf")
    assert_legible(fig)
    ax_loss = fig.axes[0]
    caps = [c for c in ax_loss.collections if type(c).__name__ == "LineCollection"]
    assert caps, "expected an error bar for the spread over seeds"
    segment = caps[0].get_segments()[0]
    assert abs(segment[1][1] - segment[0][1]) == pytest.approx(2 * stdev([20.0, 21.0, 22.0]))


def test_training_curves_rejects_bad_history(tmp_path):
    bad = history("adapt", 1, [1.0, 0.5], [0.1, 0.2], selected=5)
    with pytest.raises(ValueError, match="selected_epoch 5"):
        training_curves_plot({"adapt": [bad]}, None, tmp_path / "t.png", tmp_path / "t.pdf")
    with pytest.raises(ValueError, match="BLEU-9"):
        training_curves_plot({"adapt": [history("adapt", 1, [1.0], [0.1], 1)]}, None, tmp_path / "t.png",
                             tmp_path / "t.pdf", select_metric="BLEU-9")


# -- retrieval ----------------------------------------------------------------------------------
RETRIEVAL_FILE = {"split": "test", "selected_on": "val", "epoch": 7, "n_pairs": 1000, "n_texts": 5000,
                  "t2p": {"R@1": 12.5, "R@5": 40.25, "R@10": 99.0, "MedR": 9.0, "MeanR": 30.2},
                  "p2t": {"R@1": 20.0, "R@5": 50.0, "R@10": 100.0, "MedR": 5.5, "MeanR": 20.125}}


@pytest.mark.parametrize("comparable", [False, True])
def test_retrieval_plot(tmp_path, comparable):
    png, pdf = tmp_path / "r.png", tmp_path / "r.pdf"
    pub = RETRIEVAL["clevr_change"]
    fig = retrieval_plot(RETRIEVAL_FILE, pub, png, pdf, title="Adaptation-stage retrieval", comparable=comparable)
    assert_written(png, pdf)
    assert_legible(fig)
    for ax, direction in zip(fig.axes, ("t2p", "p2t")):
        bars = bars_by_label(ax)
        reproduced = next(c for label, c in bars.items() if label.startswith("reproduced"))
        published = next(c for label, c in bars.items() if label.startswith("published"))
        assert [p.get_height() for p in reproduced.patches] == [RETRIEVAL_FILE[direction][k]
                                                                for k in ("R@1", "R@5", "R@10")]
        assert [p.get_height() for p in published.patches] == [getattr(pub, direction)[k]
                                                               for k in ("R@1", "R@5", "R@10")]
        assert ("not comparable" in published.get_label()) == (not comparable)
        assert f"MedR {RETRIEVAL_FILE[direction]['MedR']:g}" in ax.get_title()
        assert ax.get_ylabel() in ("recall (%)", "")
        assert max(ax.get_yticks()) == 100
    assert fig.axes[0].get_ylabel() == "recall (%)"


def test_retrieval_plot_without_published(tmp_path):
    fig = retrieval_plot(RETRIEVAL_FILE, None, tmp_path / "r.png", tmp_path / "r.pdf")
    assert_legible(fig)
    assert all(len(bars_by_label(ax)) == 1 for ax in fig.axes)


# -- per change type ----------------------------------------------------------------------------
@pytest.mark.parametrize("n_seeds", [1, 3])
@pytest.mark.parametrize("types", [{"color": 12}, TYPES5])
def test_per_type_plot(tmp_path, n_seeds, types):
    variants = seeded(n_seeds, types)
    baseline = metric_file("constant", CONSTANT, seed=None, types=types)
    png, pdf = tmp_path / "p.png", tmp_path / "p.pdf"
    fig = per_type_plot(variants, baseline, png, pdf, title="Change pairs by type on data")
    assert_written(png, pdf)
    assert_legible(fig)
    ax = fig.axes[0]
    groups = ["change", "no-change", *types]
    sizes = variants["adapt"][0]["subsets"]
    assert [t.get_text() for t in ax.get_xticklabels()] == [f"{g}\n(n={sizes[g]['n_pairs']})" for g in groups]
    for variant in VARIANTS:
        bars = bars_by_label(ax)[VARIANT_LABELS[variant]]
        expected = [100 * mean(r["subsets"][g]["metrics"]["CIDEr"] for r in variants[variant]) for g in groups]
        assert [p.get_height() for p in bars.patches] == pytest.approx(expected)
        assert (bars.errorbar is not None) == (n_seeds > 1)
    levels = sorted(seg[0][1] for coll in ax.collections if hasattr(coll, "get_segments")
                    for seg in coll.get_segments() if seg[0][1] == seg[1][1] and seg[0][0] != seg[1][0])
    assert levels == pytest.approx(sorted(100 * baseline["subsets"][g]["metrics"]["CIDEr"] for g in groups))


def test_per_type_plot_needs_subsets(tmp_path):
    with pytest.raises(ValueError, match="no 'subsets'"):
        per_type_plot(seeded(1), None, tmp_path / "p.png", tmp_path / "p.pdf")
    runs = seeded(2, TYPES5)
    runs["adapt"][1]["subsets"]["color"]["n_pairs"] = 3
    with pytest.raises(ValueError, match="same pairs"):
        per_type_plot(runs, None, tmp_path / "p.png", tmp_path / "p.pdf")


# -- qualitative --------------------------------------------------------------------------------
def manifest_entries(types):
    """Interleaved like CLEVR-Change: per scene a change pair (typed) and its distractor."""
    entries = []
    for i, change_type in enumerate(types):
        pid = f"{i:06d}.png"
        entries.append({"pair_id": pid, "split": "test", "before": f"images/b{i}.png", "after": f"sc_images/a{i}.png",
                        "references": [f"reference {j} of pair {i}" for j in range(4)], "changed": True,
                        "change_type": change_type, "group": pid})
        entries.append({"pair_id": pid + "_n", "split": "test", "before": f"images/b{i}.png",
                        "after": f"nsc_images/n{i}.png", "references": ["no change was made", "nothing changed"],
                        "changed": False, "change_type": None, "group": pid})
    return entries


ORDER = ["move", "color", "move", "drop", "color", "add", "material", "drop", "add"]


class Spy(dict):
    """A caption mapping that records every pair id read from it, and refuses to be scanned."""

    def __init__(self, *args):
        super().__init__(*args)
        self.read = []

    def __getitem__(self, key):
        self.read.append(key)
        return super().__getitem__(key)

    def __iter__(self):
        raise AssertionError("predictions were scanned: selection must not look at captions")

    def values(self):
        raise AssertionError("predictions were scanned: selection must not look at captions")

    items = values


def test_qualitative_examples_pick_by_position_only():
    manifest = manifest_entries(ORDER)
    ids = [m["pair_id"] for m in manifest]
    good = {v: Spy({m["pair_id"]: m["references"][0] for m in manifest}) for v in VARIANTS}
    bad = {v: Spy({pid: "nonsense" for pid in ids}) for v in VARIANTS}
    picked = qualitative_examples(manifest, good)
    # First pair of each type in order of appearance, then the first no-change pair.
    assert [e["pair_id"] for e in picked] == ["000000.png", "000001.png", "000003.png", "000005.png",
                                              "000006.png", "000000.png_n"]
    assert [e["change_type"] for e in picked] == ["move", "color", "drop", "add", "material", None]
    # Captions do not change the choice, and only the chosen pairs' captions are read.
    assert [e["pair_id"] for e in qualitative_examples(manifest, bad)] == [e["pair_id"] for e in picked]
    for spy in good.values():
        assert spy.read == [e["pair_id"] for e in picked]
    assert list(picked[0]["captions"]) == list(VARIANTS)
    assert picked[0]["captions"]["adapt"] == manifest[0]["references"][0]
    assert [e["pair_id"] for e in qualitative_examples(manifest, good, limit=3)] == ids[0:1] + ids[2:3] + ids[6:7]


def test_qualitative_examples_without_change_types():
    manifest = [{**m, "change_type": None, "changed": True} for m in manifest_entries(ORDER)]
    preds = {"adapt": {m["pair_id"]: "x" for m in manifest}}
    assert [e["pair_id"] for e in qualitative_examples(manifest, preds, limit=4)] == \
        [m["pair_id"] for m in manifest[:4]]


def test_qualitative_examples_missing_caption():
    manifest = manifest_entries(["color"])
    with pytest.raises(KeyError, match="000000.png"):
        qualitative_examples(manifest, {"adapt": {}})


def write_images(root, manifest, size=(120, 80)):
    for i, entry in enumerate(manifest):
        for key, colour in (("before", (200, 60, 60)), ("after", (60, 60, 200))):
            path = root / entry[key]
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", size, colour).save(path)


@pytest.mark.parametrize("types", [["color"], ORDER])
@pytest.mark.parametrize("caption", ["the scene did not change", LONG])
def test_qualitative_plot(tmp_path, types, caption):
    manifest = manifest_entries(types)
    write_images(tmp_path / "raw", manifest)
    examples = qualitative_examples(manifest, {v: {m["pair_id"]: caption for m in manifest} for v in VARIANTS})
    png, pdf = tmp_path / "q.png", tmp_path / "q.pdf"
    fig = qualitative_plot(examples, tmp_path / "raw", png, pdf, title="Data, test split: captions of seed 2021")
    assert_written(png, pdf)
    assert_legible(fig)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert len(fig.axes) == 3 * len(examples)
    for variant in VARIANTS:
        assert texts.count(VARIANT_LABELS[variant] + ":") == len(examples)
    # Each caption is printed under its variant's label, wrapped (long ones on several lines), every word kept.
    lines = [t.get_text() for t in fig.axes[2].texts if t.get_text() != "■"]  # not the colour swatches
    labels = [VARIANT_LABELS[v] + ":" for v in VARIANTS]
    for label in labels:
        start = lines.index(label) + 1
        stop = next((i for i in range(start, len(lines)) if lines[i] in labels), len(lines))
        assert " ".join(lines[start:stop]).split() == caption.split()
        assert (stop - start > 1) == (caption == LONG)
    # Four references: three shown, and the header says so.
    assert "references (3 of 4):" in texts and not any("reference 3 of" in t for t in texts)


def test_qualitative_plot_keeps_aspect_ratio(tmp_path):
    manifest = manifest_entries(["color"])[:1]
    write_images(tmp_path, manifest, size=(60, 100))  # portrait
    fig = qualitative_plot(qualitative_examples(manifest, {"adapt": {"000000.png": "a caption"}}), tmp_path,
                           tmp_path / "q.png", tmp_path / "q.pdf")
    FigureCanvasAgg(fig)
    fig.canvas.draw()
    box = fig.axes[0].get_window_extent()
    assert box.height / box.width == pytest.approx(100 / 60, rel=0.02)
    assert not fig.axes[0].get_xticks().size and not fig.axes[0].get_yticks().size
    assert [fig.axes[0].get_title(), fig.axes[1].get_title()] == ["before", "after"]


def test_qualitative_plot_image_errors_name_the_file(tmp_path):
    manifest = manifest_entries(["color"])[:1]
    examples = qualitative_examples(manifest, {"adapt": {"000000.png": "a caption"}})
    with pytest.raises(FileNotFoundError, match="images/b0.png"):
        qualitative_plot(examples, tmp_path, tmp_path / "q.png", tmp_path / "q.pdf")
    write_images(tmp_path, manifest)
    (tmp_path / "sc_images" / "a0.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="a0.png"):
        qualitative_plot(examples, tmp_path, tmp_path / "q.png", tmp_path / "q.pdf")
    assert not (tmp_path / "q.png").exists()
