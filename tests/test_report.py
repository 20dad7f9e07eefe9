"""results/tables.tex and the ablation plot, from fake metric files."""
from __future__ import annotations

import re
import subprocess
from statistics import mean, stdev

import pytest
from PIL import Image

from clip4idc.io import write_json
from clip4idc.metrics.caption import METRIC_KEYS
from clip4idc.report import BASELINE_LABEL, VARIANT_LABELS
from clip4idc.report.plots import ablation_plot
from clip4idc.report.published import CAPTIONING, RETRIEVAL, SEED_SPREAD
from clip4idc.report.stats import paired_test
from provenance import allowed_decimals, printed_decimals
from clip4idc.stages.tables_pdf import PREAMBLE, document
from clip4idc.report.tables import (HEADER, MAIN_METRICS, RELEASED_LABEL, ablation_overview, dataset_tables,
                                    load_metric_files, load_metric_runs, write_tables)

# Chosen so the best variant differs by column, and two variants tie on ROUGE-L once rounded.
FAKE = {
    "clip-ft":  [0.7012, 0.5833, 0.4711, 0.3821, 0.3567, 0.65501, 0.98612],
    "no-adapt": [0.7684, 0.6521, 0.5412, 0.4473, 0.3312, 0.70123, 1.21455],
    "adapt":    [0.8011, 0.6977, 0.5903, 0.4952, 0.3521, 0.70124, 1.38731],
}
BASELINE = [0.4023, 0.3011, 0.2122, 0.1411, 0.1733, 0.3891, 0.1121]
RETRIEVAL_FILE = {"split": "test", "n_pairs": 40, "n_texts": 200,
                  "t2p": {"R@1": 12.5, "R@5": 40.25, "R@10": 55.0, "MedR": 9.0, "MeanR": 30.2},
                  "p2t": {"R@1": 20.0, "R@5": 50.0, "R@10": 62.5, "MedR": 5.5, "MeanR": 20.125}}


def metric_file(variant, values, seed=42, n_pairs=40):
    return {"variant": variant, "seed": seed, "split": "test", "n_pairs": n_pairs,
            "metrics": dict(zip(METRIC_KEYS, values))}


@pytest.fixture
def files(tmp_path):
    paths = []
    for variant, values in FAKE.items():
        path = tmp_path / "metrics" / variant / "seed42.json"
        write_json(path, metric_file(variant, values))
        paths.append(path)
    write_json(tmp_path / "metrics" / "constant.json", metric_file("constant", BASELINE, seed=None))
    return paths, tmp_path / "metrics" / "constant.json"


def table(tex: str, label: str) -> str:
    """The table environment holding `\\label{label}`."""
    for block in re.findall(r"\\begin\{table\}.*?\\end\{table\}", tex, flags=re.S):
        if rf"\label{{{label}}}" in block:
            return block
    raise AssertionError(f"no table labelled {label}")


def rows(block: str) -> dict[str, list[str]]:
    """Body rows of a tabular: first cell -> other cells, LaTeX bold removed."""
    body = block.split(r"\begin{tabular}", 1)[1]
    out = {}
    for line in body.splitlines():
        if line.rstrip().endswith(r"\\"):
            cells = [c.strip() for c in line.rstrip()[:-2].split(" & ")]
            out[cells[0]] = cells[1:]
    return out


def unbold(cell: str) -> str:
    return re.sub(r"\\textbf\{([^}]*)\}", r"\1", cell)


def write_default(tmp_path, files, **kwargs):
    paths, base_path = files
    variants = load_metric_files(paths)
    baseline = load_metric_files([base_path])["constant"]
    out = tmp_path / "results" / "tables.tex"
    args = dict(variants=variants, baseline=baseline, retrieval=RETRIEVAL_FILE,
                dataset_label="the synthetic embedded dataset")
    write_tables(out, **(args | kwargs))
    return out.read_text()


def test_ablation_numbers_are_inputs_times_100(tmp_path, files):
    tex = write_default(tmp_path, files)
    body = rows(table(tex, "tab:ablation"))
    expected = {VARIANT_LABELS[v]: vals for v, vals in FAKE.items()} | {BASELINE_LABEL: BASELINE}
    for label, values in expected.items():
        printed = [unbold(c) for c in body[label]]
        assert printed == [f"{round(100 * v, 2):.2f}" for v in values], label
    # nothing else numeric in the rows (header + 4 data rows)
    assert set(body) == {"Model", *expected}


def test_every_decimal_in_the_file_comes_from_inputs_or_published(tmp_path, files):
    tex = write_default(tmp_path, files)
    allowed = {f"{100 * v:.2f}" for vals in [*FAKE.values(), BASELINE] for v in vals}
    allowed |= {f"{v:.2f}" for block in ("t2p", "p2t") for v in RETRIEVAL_FILE[block].values()}
    allowed |= {f"{v:.1f}" for block in ("t2p", "p2t") for v in RETRIEVAL_FILE[block].values()}
    sources = [*CAPTIONING.values(), *RETRIEVAL.values(),
               *(s for spread in SEED_SPREAD.values() for s in spread.values())]
    for item in sources:
        allowed |= set(re.findall(r"\d+\.\d+", item.source))
        numbers = [*getattr(item, "metrics", {}).values(), *getattr(item, "t2p", {}).values(),
                   *getattr(item, "p2t", {}).values(),
                   *(getattr(item, a, None) for a in ("mean", "sd", "min", "max"))]
        allowed |= {str(float(x)) for x in numbers if x is not None}
    printed = set(re.findall(r"\d+\.\d+", tex))
    assert printed <= allowed, printed - allowed


def test_bold_marks_the_best_variant_per_column(tmp_path, files):
    body = rows(table(write_default(tmp_path, files), "tab:ablation"))
    for col, key in enumerate(METRIC_KEYS):
        best = max(round(100 * vals[col], 2) for vals in FAKE.values())
        for variant, vals in FAKE.items():
            cell = body[VARIANT_LABELS[variant]][col]
            assert cell.startswith(r"\textbf{") == (round(100 * vals[col], 2) == best), (variant, key)
        assert not body[BASELINE_LABEL][col].startswith(r"\textbf")
    # METEOR: clip-ft is best; ROUGE-L: no-adapt and adapt tie at 70.12 -> both bold
    assert body["CLIP-FT"][4].startswith(r"\textbf")
    assert body["CLIP4IDC w/o adaptation"][5] == body["CLIP4IDC (with adaptation)"][5] == r"\textbf{70.12}"


def test_published_table_and_not_comparable_note(tmp_path, files):
    block = table(write_default(tmp_path, files), "tab:published")
    assert "NOT comparable" in block and "orientation only" in block
    assert "the synthetic embedded dataset" in block
    body = rows(block)
    assert body["Reproduced, CLIP4IDC (with adaptation)"] == [f"{100 * v:.2f}" for v in FAKE["adapt"]]
    published = CAPTIONING["clevr_change"]
    assert [float(c) for c in body["Published, CLIP4IDC"]] == [published.metrics[k] for k in METRIC_KEYS]
    cider = SEED_SPREAD["clevr_change"]["CIDEr"]
    assert body["Published, range over 8 seeds"][-1] == f"{cider.min}--{cider.max}"
    assert float(body["Published, mean of 8 seeds"][-1]) == cider.mean
    assert float(body["Published, mean of 8 seeds"][3]) == SEED_SPREAD["clevr_change"]["BLEU-4"].mean
    assert published.source.split(":")[0] in block


def test_retrieval_table(tmp_path, files):
    block = table(write_default(tmp_path, files), "tab:retrieval")
    body = rows(block)
    assert body["Reproduced"] == ["T-IP", "12.50", "40.25", "55.00", "9.0", "30.20"]
    assert body[""][0] == "IP-T"  # last unnamed row: the published IP-T
    pub = RETRIEVAL["clevr_change"]
    assert [float(c) for c in body["Published"][1:4]] == [pub.t2p[k] for k in ("R@1", "R@5", "R@10")]
    assert "NOT comparable" in block
    assert "200 captions" in block and "40 pairs" in block


def test_no_retrieval_table_without_retrieval(tmp_path, files):
    tex = write_default(tmp_path, files, retrieval=None)
    assert r"\label{tab:retrieval}" not in tex


def test_free_text_is_escaped(tmp_path, files):
    label = r"my_data & 100% #1 {v2} $x$ ~ ^ \ end"
    tex = write_default(tmp_path, files, dataset_label=label)
    escaped = (r"my\_data \& 100\% \#1 \{v2\} \$x\$ \textasciitilde{} \textasciicircum{} "
               r"\textbackslash{} end")
    assert escaped in tex
    assert label not in tex


def test_environments_balanced_and_booktabs(tmp_path, files):
    tex = write_default(tmp_path, files)
    stack = []
    for kind, env in re.findall(r"\\(begin|end)\{(\w+)\}", tex):
        if kind == "begin":
            stack.append(env)
        else:
            assert stack and stack.pop() == env
    assert not stack
    assert tex.count(r"\begin{table}") == 3
    for cmd in (r"\toprule", r"\midrule", r"\bottomrule", r"\caption{", r"\label{"):
        assert cmd in tex
    assert tex.count("{") == tex.count("}")
    # written atomically: no temporary sibling left behind
    assert [p.name for p in (tmp_path / "results").iterdir()] == ["tables.tex"]


def test_multi_seed_runs_print_mean_and_sd(tmp_path):
    paths = []
    for seed, shift in [(1, 0.0), (2, 0.02)]:
        for variant, values in FAKE.items():
            path = tmp_path / variant / f"seed{seed}.json"
            write_json(path, metric_file(variant, [v + shift for v in values], seed=seed))
            paths.append(path)
    runs = load_metric_runs(paths)
    assert [r["seed"] for r in runs["adapt"]] == [1, 2]
    write_tables(tmp_path / "t.tex", variants=runs, baseline=None, retrieval=None, dataset_label="x")
    body = rows(table((tmp_path / "t.tex").read_text(), "tab:ablation"))
    first = body["CLIP4IDC (with adaptation)"][0]
    assert unbold(first.split(r"\,")[0]) == f"{100 * (FAKE['adapt'][0] + 0.01):.2f}"
    assert r"$\pm$1.41" in first  # sample sd of (x, x + 0.02), ×100
    with pytest.raises(ValueError, match="load_metric_runs"):
        load_metric_files(paths)


def test_missing_key_names_file_and_key(tmp_path, files):
    bad = metric_file("adapt", FAKE["adapt"])
    del bad["metrics"]["CIDEr"]
    write_json(tmp_path / "bad.json", bad)
    with pytest.raises(ValueError, match=r"bad\.json.*metrics\.CIDEr"):
        load_metric_files([tmp_path / "bad.json"])
    bad = metric_file("adapt", FAKE["adapt"])
    del bad["n_pairs"]
    write_json(tmp_path / "bad2.json", bad)
    with pytest.raises(ValueError, match=r"bad2\.json.*'n_pairs'"):
        load_metric_files([tmp_path / "bad2.json"])
    with pytest.raises(ValueError, match=r"variants\['adapt'\].*'split'"):
        write_tables(tmp_path / "t.tex", variants={"adapt": {k: v for k, v in metric_file(
            "adapt", FAKE["adapt"]).items() if k != "split"}}, baseline=None, retrieval=None,
            dataset_label="x")
    with pytest.raises(ValueError, match=r"retrieval.*'p2t\.MedR'"):
        ret = {**RETRIEVAL_FILE, "p2t": {k: v for k, v in RETRIEVAL_FILE["p2t"].items() if k != "MedR"}}
        write_tables(tmp_path / "t.tex", variants={"adapt": metric_file("adapt", FAKE["adapt"])},
                     baseline=None, retrieval=ret, dataset_label="x")
    assert not (tmp_path / "t.tex").exists()


def test_other_input_errors(tmp_path):
    good = metric_file("adapt", FAKE["adapt"])
    with pytest.raises(ValueError, match=r"not ×100"):
        write_tables(tmp_path / "t.tex", variants={"adapt": metric_file("adapt", [86.48] * 7)},
                     baseline=None, retrieval=None, dataset_label="x")
    with pytest.raises(ValueError, match="unknown variant"):
        write_tables(tmp_path / "t.tex", variants={"adapted": good}, baseline=None, retrieval=None,
                     dataset_label="x")
    with pytest.raises(ValueError, match="different sets"):
        write_tables(tmp_path / "t.tex", variants={"adapt": good},
                     baseline=metric_file("constant", BASELINE, n_pairs=7), retrieval=None,
                     dataset_label="x")
    with pytest.raises(ValueError, match="published_dataset"):
        write_tables(tmp_path / "t.tex", variants={"adapt": good}, baseline=None, retrieval=None,
                     dataset_label="x", published_dataset="coco")


def test_other_published_datasets(tmp_path):
    write_tables(tmp_path / "t.tex", variants={"adapt": metric_file("adapt", FAKE["adapt"])},
                 baseline=None, retrieval=RETRIEVAL_FILE, dataset_label="x", published_dataset="ier")
    tex = (tmp_path / "t.tex").read_text()
    body = rows(table(tex, "tab:published"))
    assert body["Published, CLIP4IDC"][:3] == ["--", "--", "--"]  # IER gives no B-1..B-3
    assert "seeds" not in " ".join(body)  # the seed spread is CLEVR-Change's only
    assert "Published" not in rows(table(tex, "tab:retrieval"))  # no published IER retrieval


@pytest.mark.needs_pdflatex
def test_tables_compile(tmp_path, files):
    write_default(tmp_path, files)
    compile_and_check(tmp_path, "results/tables.tex")


@pytest.mark.needs_pdflatex
def test_every_new_table_compiles_and_fits_the_page(tmp_path):
    runs, baseline = seeded_runs()
    lines = ablation_overview({k: runs for k in ("a", "b", "c")},
                              {"a": "CLEVR-Change", "b": "Spot-the-Diff", "c": "Image-Editing-Request"})
    released = metric_file("released", RELEASED_VALUES, seed=None, n_pairs=runs["adapt"][0]["n_pairs"])
    lines += dataset_tables(variants=runs, baseline=baseline, retrieval=RETRIEVAL_FILE,
                            dataset_label="CLEVR-Change stand-in", key="clevr", released=released,
                            released_retrieval=RELEASED_RETRIEVAL)
    tex = "\n".join(HEADER + lines)
    assert tex.count(RELEASED_LABEL) == 2   # the published and the retrieval table
    for label in ("tab:ablation-overview", "tab:ablation:clevr", "tab:published:clevr", "tab:paired:clevr",
                  "tab:pertype:clevr", "tab:retrieval:clevr"):
        assert rf"\label{{{label}}}" in tex
    (tmp_path / "tables.tex").write_text(tex)
    compile_and_check(tmp_path, "tables.tex")


def compile_and_check(folder, tables):
    """pdflatex a document holding `tables` with the packages HEADER names; no table may stick out."""
    packages = re.findall(r"\\usepackage\{(\w+)\}", "\n".join(HEADER))
    assert "booktabs" in packages and "graphicx" in packages
    # The document `clip4idc tables-pdf` compiles holds every package the fragment's header names.
    assert all(rf"\usepackage{{{p}}}" in PREAMBLE for p in packages), (packages, PREAMBLE)
    doc = folder / "doc.tex"
    doc.write_text(document(folder / tables))
    for _ in range(2):  # twice, so that \ref resolves
        done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name],
                              cwd=folder, capture_output=True, timeout=60)
        assert done.returncode == 0, done.stdout.decode(errors="replace")[-3000:]
    log = (folder / "doc.log").read_text(errors="replace")
    too_wide = [float(w) for w in re.findall(r"Overfull \\hbox \(([\d.]+)pt too wide\)", log)]
    assert all(w <= 20 for w in too_wide), too_wide
    assert "undefined" not in log.lower().replace("undefined references", ""), "an undefined control sequence or ref"


@pytest.mark.parametrize("seeds", [1, 3])
def test_ablation_plot_writes_png_and_pdf(tmp_path, seeds):
    variants = {v: [metric_file(v, [x * (1 + 0.01 * s) for x in vals], seed=s) for s in range(seeds)]
                for v, vals in FAKE.items()}
    png, pdf = tmp_path / "fig" / "ablation.png", tmp_path / "fig" / "ablation.pdf"
    ablation_plot(variants, metric_file("constant", BASELINE, seed=None), png, pdf)
    with Image.open(png) as im:
        im.load()
        assert im.width > 600 and im.height > 300
    assert pdf.read_bytes().startswith(b"%PDF")
    assert sorted(p.name for p in png.parent.iterdir()) == ["ablation.pdf", "ablation.png"]


def test_ablation_plot_without_baseline_and_one_variant(tmp_path):
    png, pdf = tmp_path / "a.png", tmp_path / "a.pdf"
    ablation_plot({"adapt": metric_file("adapt", FAKE["adapt"])}, None, png, pdf, title="t")
    assert png.stat().st_size > 0 and pdf.read_bytes()[:4] == b"%PDF"


# -- several seeds with pair sets: paired test, per-type table, overview --------------------------
SEEDS = (2021, 2022, 2023)
# Per-seed shifts of every metric. adapt and clip-ft move together, so CLIP4IDC vs CLIP-FT has the
# same difference at every seed (no t); the other pairs have a t.
SHIFTS = {"clip-ft": (0.0, 0.01, 0.03), "no-adapt": (0.0, 0.02, 0.005), "adapt": (0.0, 0.01, 0.03)}
# Pair sets present: not every change type, to check only those that occur are printed, in order.
SETS = {"change": (20, 0.8), "no-change": (20, 1.2), "color": (12, 0.7), "add": (8, 0.5)}


def seeded_file(variant, values, seed, shift=0.0):
    content = metric_file(variant, [v + shift for v in values], seed=seed)
    content["subsets"] = {name: {"n_pairs": n, "metrics": {k: v * factor for k, v in content["metrics"].items()}}
                          for name, (n, factor) in SETS.items()}
    return content


def seeded_runs():
    runs = {v: [seeded_file(v, FAKE[v], seed, shift) for seed, shift in zip(SEEDS, SHIFTS[v])] for v in FAKE}
    return runs, seeded_file("constant", BASELINE, None)


def seeded_tex(**kwargs):
    runs, baseline = seeded_runs()
    args = dict(variants=runs, baseline=baseline, retrieval=None, dataset_label="x", key="d") | kwargs
    return "\n".join(dataset_tables(**args))


def values(run, subset=None):
    return run["metrics"] if subset is None else run["subsets"][subset]["metrics"]


def test_dataset_tables_order_with_seeds_and_sets():
    tex = seeded_tex(retrieval=RETRIEVAL_FILE)
    labels = re.findall(r"\\label\{(tab:[^}]*)\}", tex)
    assert labels == ["tab:ablation:d", "tab:published:d", "tab:paired:d", "tab:pertype:d", "tab:retrieval:d"]


def test_paired_table_rows_columns_and_values():
    runs, _ = seeded_runs()
    block = table(seeded_tex(), "tab:paired:d")
    body = rows(block)
    pairs = {"CLIP4IDC vs w/o adaptation": ("adapt", "no-adapt"), "CLIP4IDC vs CLIP-FT": ("adapt", "clip-ft"),
             "w/o adaptation vs CLIP-FT": ("no-adapt", "clip-ft")}
    assert set(body) == {"", "Pair (first vs second)", *pairs}
    assert body[""] == [rf"\multicolumn{{2}}{{c}}{{{m}}}" for m in ("B-4", "METEOR", "ROUGE-L", "CIDEr")]
    assert body["Pair (first vs second)"] == [r"$\Delta$", "$p$"] * 4
    for row, (a, b) in pairs.items():
        for i, key in enumerate(MAIN_METRICS):
            delta, p = body[row][2 * i], body[row][2 * i + 1]
            diff = 100 * (mean(values(r)[key] for r in runs[a]) - mean(values(r)[key] for r in runs[b]))
            assert delta.replace("$-$", "-") == ("0.00" if abs(diff) < 0.005 else f"{diff:+.2f}"), (row, key)
            if (a, b) == ("adapt", "clip-ft"):
                assert p == "--"  # the same difference at every seed: no t
            else:
                test = paired_test(runs[a], runs[b], key)
                assert p == (r"$<$0.001" if test.p < 0.001 else f"{test.p:.3f}"), (row, key)
    # no-adapt is behind adapt on B-4 (0.4473 vs 0.4952): a typeset minus, not a hyphen
    assert body["w/o adaptation vs CLIP-FT"][0].startswith("+")
    assert "$n=3$ seeds (2021, 2022, 2023)" in block and "two-sided" in block and "paired by seed" in block
    assert "little power" in block and "$t$ is undefined" in block
    assert r"\cmidrule(lr){2-3}\cmidrule(lr){4-5}\cmidrule(lr){6-7}\cmidrule(lr){8-9}" in block


def test_paired_table_sign_and_small_p():
    # clip-ft far behind at every seed with a little noise: p is tiny, differences negative
    runs = {"adapt": [metric_file("adapt", [0.1 + 0.001 * s] * 7, seed=s) for s in range(5)],
            "clip-ft": [metric_file("clip-ft", [0.5 + 0.0013 * s] * 7, seed=s) for s in range(5)]}
    body = rows(table("\n".join(dataset_tables(variants=runs, baseline=None, retrieval=None, dataset_label="x")),
                      "tab:paired"))
    assert list(body) == ["", "Pair (first vs second)", "CLIP4IDC vs CLIP-FT"]
    assert body["CLIP4IDC vs CLIP-FT"][0] == "$-$40.06" and body["CLIP4IDC vs CLIP-FT"][1] == "$<$0.001"


def test_no_paired_test_with_one_seed_or_one_variant(tmp_path, files):
    tex = write_default(tmp_path, files)
    assert r"\label{tab:paired}" not in tex
    assert "% No paired test on the synthetic embedded dataset: one seed per variant" in tex
    runs, _ = seeded_runs()
    tex = "\n".join(dataset_tables(variants={"adapt": runs["adapt"]}, baseline=None, retrieval=None,
                                   dataset_label="x"))
    assert r"\label{tab:paired}" not in tex and "% No paired test on x: it needs two variants" in tex


def test_paired_test_needs_the_same_seeds():
    runs, _ = seeded_runs()
    runs["no-adapt"] = runs["no-adapt"][:2]
    with pytest.raises(ValueError, match=r"'adapt' vs 'no-adapt'.*different seeds"):
        seeded_tex(variants=runs)


def test_pertype_table_rows_columns_and_values():
    runs, baseline = seeded_runs()
    block = table(seeded_tex(), "tab:pertype:d")
    body = rows(block)
    assert body["Model"] == ["Change", "No-change", "Color", "Add"]  # only the sets present, in order
    assert set(body) == {"Model", *(VARIANT_LABELS[v] for v in FAKE), BASELINE_LABEL}
    for variant, group in runs.items():
        for col, name in enumerate(SETS):
            cider = [values(r, name)["CIDEr"] for r in group]
            cell = body[VARIANT_LABELS[variant]][col]
            assert unbold(cell.split(r"\,")[0]) == f"{100 * mean(cider):.2f}", (variant, name)
            assert cell.endswith(rf"$\pm${100 * stdev(cider):.2f}}}"), (variant, name)
    assert body[BASELINE_LABEL] == [f"{100 * values(baseline, s)['CIDEr']:.2f}" for s in SETS]
    # adapt has the best CIDEr (1.387 against 1.215 and 0.986 before shifts): bold in every set
    assert all(c.startswith(r"\textbf") for c in body[VARIANT_LABELS["adapt"]])
    assert not any(c.startswith(r"\textbf") for c in body["CLIP-FT"])
    assert "Pairs per set: change 20, no-change 20, color 12, add 8." in block
    assert "DUDA" in block and "corpus of its own" in block


def test_no_pertype_table_without_sets(tmp_path, files):
    tex = write_default(tmp_path, files)  # metric files without a `subsets` key
    assert "pertype" not in tex and "% No per-type table" in tex
    runs, baseline = seeded_runs()
    for group in [*runs.values(), [baseline]]:
        for run in group:
            run["subsets"] = {}  # Spot-the-Diff, IER: an empty `subsets`
    tex = seeded_tex(variants=runs, baseline=baseline)
    assert "pertype" not in tex and "% No per-type table" in tex


def test_pertype_sets_must_agree():
    runs, baseline = seeded_runs()
    del runs["clip-ft"][1]["subsets"]["add"]
    with pytest.raises(ValueError, match=r"different pair sets.*clip-ft \(seed 2022\)"):
        seeded_tex(variants=runs)
    runs, baseline = seeded_runs()
    baseline["subsets"]["color"]["n_pairs"] = 11
    with pytest.raises(ValueError, match=r"different pair sets.*constant baseline"):
        seeded_tex(baseline=baseline)


def test_subsets_are_validated(tmp_path):
    for change, match in [(lambda s: s.update(texture=s["color"]), r"unknown pair set 'subsets\.texture'"),
                          (lambda s: s["add"].update(n_pairs=41), r"'subsets\.add\.n_pairs' must be an integer"),
                          (lambda s: s["add"]["metrics"].update(CIDEr=150.0), r"'subsets\.add\.metrics\.CIDEr'.*×100"),
                          (lambda s: s["color"].pop("metrics"), r"'subsets\.color'.*missing key 'metrics'")]:
        bad = seeded_file("adapt", FAKE["adapt"], 1)
        change(bad["subsets"])
        write_json(tmp_path / "bad.json", bad)
        with pytest.raises(ValueError, match=r"bad\.json.*" + match):
            load_metric_runs([tmp_path / "bad.json"])


RELEASED_VALUES = [0.8648, 0.7797, 0.6758, 0.5687, 0.3840, 0.7643, 1.5075]
RELEASED_RETRIEVAL = {"split": "test", "n_pairs": 40, "n_texts": 200,
                      "t2p": {"R@1": 26.75, "R@5": 58.25, "R@10": 71.0, "MedR": 4.0, "MeanR": 12.5},
                      "p2t": {"R@1": 46.5, "R@5": 82.5, "R@10": 87.5, "MedR": 2.0, "MeanR": 6.75}}


def test_released_weights_rows_beside_the_reproduction_and_the_published_numbers(tmp_path, files):
    tex = write_default(tmp_path, files, released=metric_file("released", RELEASED_VALUES, seed=None),
                        released_retrieval=RELEASED_RETRIEVAL, published_dataset="clevr_change", comparable=True)
    block = table(tex, "tab:published")
    body = rows(block)
    assert body[RELEASED_LABEL] == [f"{100 * v:.2f}" for v in RELEASED_VALUES]
    order = [line.split(" & ")[0] for line in block.splitlines() if " & " in line]
    assert order.index("Reproduced, CLIP4IDC (with adaptation)") < order.index(RELEASED_LABEL) < order.index(
        "Published, CLIP4IDC")
    assert "test-selected" in block
    retrieval = table(tex, "tab:retrieval")
    lines = [line for line in retrieval.splitlines() if line.startswith(RELEASED_LABEL)]
    assert lines == [RELEASED_LABEL + " & T-IP & 26.75 & 58.25 & 71.00 & 4.0 & 12.50 \\\\"]
    assert "& IP-T & 46.50 & 82.50 & 87.50 & 2.0 & 6.75" in retrieval
    # not a variant: no row in the ablation, and no row at all without the released files
    assert RELEASED_LABEL not in table(tex, "tab:ablation") and RELEASED_LABEL not in write_default(tmp_path, files)


def test_released_weights_must_be_scored_on_the_reproductions_sets(tmp_path, files):
    with pytest.raises(ValueError, match="different sets"):
        write_default(tmp_path, files, released=metric_file("released", RELEASED_VALUES, seed=None, n_pairs=39))
    with pytest.raises(ValueError, match="retrieval files were scored on different sets"):
        write_default(tmp_path, files, released_retrieval={**RELEASED_RETRIEVAL, "n_texts": 199})
    with pytest.raises(ValueError, match="'metrics.CIDEr'"):
        write_default(tmp_path, files, released=metric_file("released", RELEASED_VALUES[:6] + [150.75], seed=None))


def test_published_table_prints_the_reproduced_seed_spread():
    runs, _ = seeded_runs()
    body = rows(table(seeded_tex(), "tab:published:d"))
    cider = [values(r)["CIDEr"] for r in runs["adapt"]]
    assert body["Reproduced, CLIP4IDC (with adaptation)"][-1] == f"{100 * mean(cider):.2f}"
    assert body["Reproduced, sd over 3 seeds"][-1] == f"{100 * stdev(cider):.2f}"
    assert body["Reproduced, range over 3 seeds"][-1] == f"{100 * min(cider):.2f}--{100 * max(cider):.2f}"
    assert "Published, range over 8 seeds" in body and "Published, mean of 8 seeds" in body


def test_published_table_has_no_spread_rows_with_one_seed(tmp_path, files):
    body = rows(table(write_default(tmp_path, files), "tab:published"))
    assert not any(r.startswith("Reproduced, sd") or r.startswith("Reproduced, range") for r in body)


def overview_rows(block):
    """Body rows in order: (first cell, other cells); sd rows have an empty first cell."""
    body = block.split(r"\midrule", 1)[1]
    return [([c.strip() for c in line[:-2].split(" & ")][0], [c.strip() for c in line[:-2].split(" & ")][1:])
            for line in (x.rstrip() for x in body.splitlines()) if line.endswith(r"\\")]


def test_overview_with_one_dataset():
    runs, _ = seeded_runs()
    lines = ablation_overview({"clevr": runs}, {"clevr": "CLEVR-Change"})
    block = table("\n".join(lines), "tab:ablation-overview")
    assert r"\multicolumn{4}{c}{CLEVR-Change}" in block and r"\cmidrule(lr){2-5}" in block
    assert rows(block)["Model"] == ["B-4", "METEOR", "ROUGE-L", "CIDEr"]
    body = overview_rows(block)
    assert [name for name, _ in body] == ["CLIP-FT", "", "CLIP4IDC w/o adaptation", "",
                                          "CLIP4IDC (with adaptation)", ""]
    for i, variant in enumerate(FAKE):
        means, sds = body[2 * i][1], body[2 * i + 1][1]
        for col, key in enumerate(MAIN_METRICS):
            vals = [values(r)[key] for r in runs[variant]]
            assert unbold(means[col]) == f"{100 * mean(vals):.2f}"
            assert sds[col] == rf"{{\scriptsize$\pm${100 * stdev(vals):.2f}}}"
    # bold: the best mean per column (adapt on B-4 and CIDEr; clip-ft on METEOR)
    assert body[4][1][0].startswith(r"\textbf") and body[0][1][1].startswith(r"\textbf")
    assert not body[0][1][0].startswith(r"\textbf")


def test_overview_with_three_datasets_and_a_missing_variant():
    runs, _ = seeded_runs()
    one_seed = {v: [metric_file(v, vals, seed=7)] for v, vals in FAKE.items()}
    partial = {"adapt": runs["adapt"], "no-adapt": runs["no-adapt"]}
    labels = {"clevr": "CLEVR-Change", "std": "Spot-the-Diff", "ier": "Image_Editing"}
    block = table("\n".join(ablation_overview({"clevr": runs, "std": one_seed, "ier": partial}, labels)),
                  "tab:ablation-overview")
    assert r"\begin{tabular}{l" + "r" * 12 + "}" in block
    assert (r"\multicolumn{4}{c}{CLEVR-Change} & \multicolumn{4}{c}{Spot-the-Diff} & "
            r"\multicolumn{4}{c}{Image\_Editing}") in block
    assert r"\cmidrule(lr){2-5}\cmidrule(lr){6-9}\cmidrule(lr){10-13}" in block
    body = overview_rows(block)
    clip_ft, clip_ft_sd = body[0][1], body[1][1]
    assert body[0][0] == "CLIP-FT" and len(clip_ft) == 12
    assert clip_ft[8:] == ["--"] * 4 and clip_ft_sd[8:] == [""] * 4  # IER has no clip-ft
    assert [unbold(c) for c in clip_ft[4:8]] == [f"{100 * v:.2f}" for v in
                                                  (FAKE["clip-ft"][3], *FAKE["clip-ft"][4:])]
    assert clip_ft_sd[4:8] == [""] * 4  # one seed: no sd
    # bold is decided within each dataset: METEOR is clip-ft's on CLEVR-Change, adapt's on IER (no clip-ft)
    adapt = body[4][1]
    assert body[4][0] == "CLIP4IDC (with adaptation)"
    assert clip_ft[1].startswith(r"\textbf") and not adapt[1].startswith(r"\textbf")
    assert adapt[9].startswith(r"\textbf")
    assert "seeds per variant" in block and "one run per variant (seed 7)" in block
    with pytest.raises(ValueError, match=r"no label for dataset\(s\) \['ier'\]"):
        ablation_overview({"ier": partial}, {})
    with pytest.raises(ValueError, match=r"datasets\['ier'\]: unknown variant"):
        ablation_overview({"ier": {"adapted": runs["adapt"]}}, {"ier": "x"})


def test_every_decimal_in_the_seeded_tables_comes_from_inputs():
    runs, baseline = seeded_runs()
    tex = "\n".join(ablation_overview({"a": runs}, {"a": "A"}) + dataset_tables(
        variants=runs, baseline=baseline, retrieval=None, dataset_label="x", key="d"))
    printed = printed_decimals(tex)
    assert printed <= allowed_decimals(runs, baseline), printed - allowed_decimals(runs, baseline)
    assert {f"{paired_test(runs['adapt'], runs['no-adapt'], 'CIDEr').p:.3f}"} <= printed