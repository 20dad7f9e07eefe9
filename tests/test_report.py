"""results/tables.tex and the ablation plot, from fake metric files."""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from PIL import Image

from clip4idc.io import write_json
from clip4idc.metrics.caption import METRIC_KEYS
from clip4idc.report import BASELINE_LABEL, VARIANT_LABELS
from clip4idc.report.plots import ablation_plot
from clip4idc.report.published import CAPTIONING, RETRIEVAL, SEED_SPREAD
from clip4idc.report.tables import (load_metric_files, load_metric_runs, write_tables)

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


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed")
def test_tables_compile(tmp_path, files):
    write_default(tmp_path, files)
    doc = tmp_path / "doc.tex"
    doc.write_text("\\documentclass{article}\\usepackage{booktabs}\\begin{document}"
                   "\\input{results/tables.tex}\\end{document}\n")
    subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name],
                   cwd=tmp_path, check=True, capture_output=True, timeout=60)


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
