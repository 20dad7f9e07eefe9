"""results/tables.tex: per dataset the ablation, reproduced vs published, paired test between variants,
per change type and adaptation retrieval tables; across datasets the ablation overview (booktabs).

Inputs are the metric files the evaluate and adapt stages write; every number printed comes from
them, from `stats.py` (p values of the paired test over seeds) or from `published.py`. The file is a
fragment for `\\input{}` and needs `booktabs` and `graphicx` (wide tables are shrunk to the line
width, never widened).

Metric file: {"variant": str, "seed": int | null, "split": str, "n_pairs": int,
              "metrics": {"BLEU-1": float, ..., "CIDEr": float},   (raw pycocoevalcap, 0-1 scale)
              "subsets": {"change" | "no-change" | <change type>: {"n_pairs": int, "metrics": {...}}}}
              (`subsets` only where the data has those pair sets; a file without the key has none)
Retrieval file: {"split": str, "n_pairs": int, "n_texts": int,
                 "t2p": {"R@1", "R@5", "R@10", "MedR", "MeanR"}, "p2t": {...}}   (R@K in percent)

A variant may be given as one metric file's content or as a list of them (one per seed): a list
is printed as mean ± sample sd, so multi-seed tables need no other code path.
"""
from __future__ import annotations

import os
import re
from statistics import mean, stdev
from typing import Mapping, Sequence

from ..data.records import CHANGE_TYPES
from ..io import read_json, write_text
from ..metrics.caption import METRIC_KEYS
from ..metrics.retrieval import RANK_KEYS
from . import BASELINE_LABEL, METRIC_LABELS, SHORT_LABELS, VARIANT_LABELS, is_finite_number
from .published import CAPTIONING, RETRIEVAL, SEED_SPREAD
from .stats import IDENTICAL, PairedTest, paired_test

METRIC_FILE_KEYS = ("variant", "seed", "split", "n_pairs", "metrics")
RETRIEVAL_FILE_KEYS = ("split", "n_pairs", "n_texts", "t2p", "p2t")
# Raw pycocoevalcap ranges; a value outside them is almost surely already ×100.
_MAX_RAW = {key: 1.0 for key in METRIC_KEYS} | {"CIDEr": 10.0}
_DIRECTIONS = {"t2p": "T-IP", "p2t": "IP-T"}
# The pair sets DUDA's protocol scores on their own (PAPER.md section 5), in print order.
SUBSET_NAMES = ("change", "no-change", *CHANGE_TYPES)
# The metrics the paper's ablation reports; the paired test and the overview use the same four.
MAIN_METRICS = ("BLEU-4", "METEOR", "ROUGE-L", "CIDEr")
# The authors' released weights (stage `released`), scored here by the same protocol as the reproduction.
RELEASED_LABEL = "Authors' released weights, through this pipeline"
_RELEASED_NOTE = (r"Authors' released weights: their trained captioner (their README, ``Pretrained Weight''), "
                  r"converted into this project's checkpoint, decoded greedily and scored here exactly as the "
                  r"reproduction; the authors selected that checkpoint on the test split, so its score is a "
                  r"test-selected one.")
_RELEASED_RETRIEVAL_NOTE = (r"Authors' released weights: their adaptation checkpoint, converted and scored here "
                            r"exactly as the reproduction's (selected by the authors on the test split).")
# The paired test's comparisons, first minus second: the paper's ablation questions.
PAIRS = (("adapt", "no-adapt"), ("adapt", "clip-ft"), ("no-adapt", "clip-ft"))


# -- metric files -------------------------------------------------------------------------------
def _require_keys(content, keys, source: str, what: str) -> None:
    if not isinstance(content, Mapping):
        raise ValueError(f"{source}: expected {what}, an object with keys {list(keys)}, got {type(content).__name__}")
    for key in keys:
        if key not in content:
            raise ValueError(f"{source}: missing key {key!r} ({what} has keys {list(keys)})")


def validate_metric_file(content, source: str) -> dict:
    """Return `content` if it is a metric file, else raise ValueError naming `source` and the key."""
    _require_keys(content, METRIC_FILE_KEYS, source, "a metric file")
    if not isinstance(content["variant"], str) or not content["variant"]:
        raise ValueError(f"{source}: key 'variant' must be a non-empty string, got {content['variant']!r}")
    if content["seed"] is not None and not _is_int(content["seed"]):
        raise ValueError(f"{source}: key 'seed' must be an integer or null, got {content['seed']!r}")
    if not isinstance(content["split"], str):
        raise ValueError(f"{source}: key 'split' must be a string, got {content['split']!r}")
    if not _is_int(content["n_pairs"]) or content["n_pairs"] < 1:
        raise ValueError(f"{source}: key 'n_pairs' must be a positive integer, got {content['n_pairs']!r}")
    _check_metrics(content["metrics"], source, "metrics")
    subsets = content.get("subsets", {})  # older files have no `subsets`: no pair sets
    if not isinstance(subsets, Mapping):
        raise ValueError(f"{source}: key 'subsets' must be an object, got {type(subsets).__name__}")
    for name, block in subsets.items():
        where = f"subsets.{name}"
        if name not in SUBSET_NAMES:
            raise ValueError(f"{source}: unknown pair set {where!r}; expected some of {list(SUBSET_NAMES)}")
        _require_keys(block, ("n_pairs", "metrics"), f"{source}: {where!r}", "a scored pair set")
        if not _is_int(block["n_pairs"]) or not 1 <= block["n_pairs"] <= content["n_pairs"]:
            raise ValueError(f"{source}: '{where}.n_pairs' must be an integer in [1, {content['n_pairs']}] "
                             f"(the file's n_pairs), got {block['n_pairs']!r}")
        _check_metrics(block["metrics"], source, f"{where}.metrics")
    return dict(content) | {"subsets": dict(subsets)}


def _check_metrics(metrics, source: str, where: str) -> None:
    if not isinstance(metrics, Mapping):
        raise ValueError(f"{source}: key {where!r} must be an object, got {type(metrics).__name__}")
    for key in METRIC_KEYS:
        if key not in metrics:
            raise ValueError(f"{source}: missing key '{where}.{key}' (expected {list(METRIC_KEYS)})")
        value = metrics[key]
        if not is_finite_number(value):
            raise ValueError(f"{source}: '{where}.{key}' must be a finite number, got {value!r}")
        if not 0.0 <= value <= _MAX_RAW[key]:
            raise ValueError(f"{source}: '{where}.{key}' = {value} is outside [0, {_MAX_RAW[key]:g}]; "
                             "metric files hold raw pycocoevalcap values (0-1 scale), not ×100")


def validate_retrieval_file(content, source: str) -> dict:
    _require_keys(content, RETRIEVAL_FILE_KEYS, source, "a retrieval file")
    for direction in _DIRECTIONS:
        block = content[direction]
        if not isinstance(block, Mapping):
            raise ValueError(f"{source}: key {direction!r} must be an object with keys {list(RANK_KEYS)}")
        for key in RANK_KEYS:
            if key not in block:
                raise ValueError(f"{source}: missing key '{direction}.{key}' (expected {list(RANK_KEYS)})")
            if not is_finite_number(block[key]):
                raise ValueError(f"{source}: '{direction}.{key}' must be a finite number, got {block[key]!r}")
    return dict(content)


def load_metric_runs(paths: Sequence[str | os.PathLike]) -> dict[str, list[dict]]:
    """Metric files grouped by variant (one entry per seed, sorted by seed)."""
    runs: dict[str, list[dict]] = {}
    for path in paths:
        content = validate_metric_file(read_json(path), str(path))
        runs.setdefault(content["variant"], []).append(content)
    for variant, group in runs.items():
        seeds = [r["seed"] for r in group]
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"variant {variant!r}: several metric files share a seed ({seeds})")
        group.sort(key=lambda r: (r["seed"] is None, r["seed"] or 0))
    return runs


def load_metric_files(paths: Sequence[str | os.PathLike]) -> dict[str, dict]:
    """One metric file per variant, keyed by its `variant`. Several seeds: use `load_metric_runs`."""
    out: dict[str, dict] = {}
    origin: dict[str, str] = {}
    for path in paths:
        content = validate_metric_file(read_json(path), str(path))
        variant = content["variant"]
        if variant in out:
            raise ValueError(f"{path}: variant {variant!r} already given by {origin[variant]}; "
                             "for several seeds of a variant use load_metric_runs")
        out[variant], origin[variant] = content, str(path)
    return out


def summarise_runs(runs: Sequence[Mapping], subset: str | None = None) -> dict:
    """Mean and sample sd (None for one run) of each caption metric over runs, on the raw scale.

    `subset`: of that pair set's scores (`subsets.<name>.metrics`) instead of the whole split's.
    """
    scores = [r["metrics"] if subset is None else r["subsets"][subset]["metrics"] for r in runs]
    values = {key: [float(s[key]) for s in scores] for key in METRIC_KEYS}
    return {"n": len(runs), "seeds": [r["seed"] for r in runs],
            "mean": {k: mean(v) for k, v in values.items()},
            "sd": {k: (stdev(v) if len(v) > 1 else None) for k, v in values.items()}}


def as_runs(value, source: str) -> list[dict]:
    """A variant given as one metric-file content or a list of them -> validated list."""
    runs = list(value) if isinstance(value, (list, tuple)) else [value]
    if not runs:
        raise ValueError(f"{source}: expected at least one metric file content, got an empty list")
    checked = [validate_metric_file(r, f"{source}[{i}]" if len(runs) > 1 else source)
               for i, r in enumerate(runs)]
    for run in checked:
        if run["n_pairs"] != checked[0]["n_pairs"] or run["split"] != checked[0]["split"]:
            first = checked[0]
            raise ValueError(f"{source}: runs were scored on different sets "
                             f"({run['split']}/{run['n_pairs']} vs {first['split']}/{first['n_pairs']} pairs)")
    return checked


def check_variants(variants: Mapping, source: str = "variants") -> dict[str, list[dict]]:
    """Validate a {variant: metric content or list} mapping; return it in the paper's order."""
    if not variants:
        raise ValueError(f"{source}: expected at least one of {list(VARIANT_LABELS)}")
    unknown = [v for v in variants if v not in VARIANT_LABELS]
    if unknown:
        raise ValueError(f"{source}: unknown variant names {unknown}; expected some of {list(VARIANT_LABELS)}")
    return {v: as_runs(variants[v], f"{source}[{v!r}]") for v in VARIANT_LABELS if v in variants}


def _check_same_set(groups: Mapping[str, list[dict]], where: str) -> None:
    # Every row of a table must describe the same test set, or the comparison means nothing.
    scored = {name: (runs[0]["split"], runs[0]["n_pairs"]) for name, runs in groups.items()}
    if len(set(scored.values())) > 1:
        raise ValueError(f"{where}: metric files were scored on different sets (split, n_pairs): {scored}")


def pair_sets(groups: Mapping[str, list[dict]], where: str) -> dict[str, int]:
    """{pair set: n_pairs} in print order (`SUBSET_NAMES`), the same for every run of every group, else
    ValueError naming both runs. Empty where the metric files score no pair sets."""
    found: dict[tuple, str] = {}
    for name, runs in groups.items():
        for run in runs:
            sets = tuple((s, run.get("subsets", {})[s]["n_pairs"]) for s in SUBSET_NAMES
                         if s in run.get("subsets", {}))
            found.setdefault(sets, f"{name} (seed {run['seed']})")
    if len(found) > 1:
        (first, a), (second, b) = list(found.items())[:2]
        raise ValueError(f"{where}: runs were scored on different pair sets (every run must be scored on the "
                         f"same pairs): {a} has {dict(first) or 'none'}, {b} has {dict(second) or 'none'}; "
                         f"re-run evaluate for all of them")
    return dict(next(iter(found)))


# -- LaTeX helpers ------------------------------------------------------------------------------
_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                  "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                  "^": r"\textasciicircum{}"}
_LATEX_SPECIAL_RE = re.compile("|".join(re.escape(c) for c in _LATEX_SPECIAL))


def latex_escape(text: str) -> str:
    return _LATEX_SPECIAL_RE.sub(lambda m: _LATEX_SPECIAL[m.group()], str(text))


def _x100(value: float) -> str:
    return f"{100.0 * value:.2f}"


def _signed_x100(value: float) -> str:
    """A difference ×100 with its sign (a typeset minus); one that rounds to zero is plain 0.00."""
    text = f"{100.0 * value:+.2f}"
    if text[1:] == "0.00":
        return "0.00"
    return text if text[0] == "+" else r"$-$" + text[1:]


def _p_value(p: float) -> str:
    # With a handful of seeds p is coarse: three decimals already say more than it supports.
    return r"$<$0.001" if p < 0.001 else f"{p:.3f}"


def _published(value: float | None) -> str:
    # str() of a float is its shortest repr, so a published "131.2" is printed as published.
    return "--" if value is None else str(float(value))


def _row(cells: Sequence[str]) -> str:
    return " & ".join(cells) + r" \\"


def _table(body: list[str], colspec: str, caption: str, label: str) -> list[str]:
    # The tabular is shrunk to the line width when wider (several datasets side by side), never
    # enlarged: `\width` is its natural width (graphicx).
    return [r"\begin{table}[t]", r"\centering", r"\small", rf"\caption{{{caption}}}",
            rf"\label{{{label}}}", r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{%",
            rf"\begin{{tabular}}{{{colspec}}}", r"\toprule", *body,
            r"\bottomrule", r"\end{tabular}%", "}", r"\end{table}", ""]


def _seed_note(runs: Mapping[str, list[dict]]) -> str:
    counts = {len(r) for r in runs.values()}
    seeds = sorted({r["seed"] for group in runs.values() for r in group}, key=str)
    listed = ", ".join(latex_escape(str(s)) for s in seeds)
    if counts == {1}:
        return f"one run per variant (seed{'s' if len(seeds) > 1 else ''} {listed})"
    if len(counts) == 1:
        return rf"mean $\pm$ sample sd over {counts.pop()} seeds per variant ({listed})"
    per = "; ".join(f"{VARIANT_LABELS[v]}: {len(r)}" for v, r in runs.items())
    return rf"mean $\pm$ sample sd over seeds ({latex_escape(per)})"


def _best(summaries: Sequence[Mapping], keys: Sequence[str]) -> dict[str, float]:
    """Per column the best printed mean; empty (nothing bold) with fewer than two rows to compare."""
    # Bold what a reader sees as best: compare the printed (rounded) values; ties all bold.
    if len(summaries) < 2:
        return {}
    return {key: max(float(_x100(s["mean"][key])) for s in summaries) for key in keys}


def _cells(summary: Mapping, keys: Sequence[str], best: Mapping[str, float], sd: bool = True) -> list[str]:
    """Mean ×100 (bold where it equals `best`), then (`sd`) ± sample sd ×100 where there are several seeds."""
    out = []
    for key in keys:
        text = _x100(summary["mean"][key])
        if key in best and float(text) == best[key]:
            text = rf"\textbf{{{text}}}"
        if sd and summary["sd"][key] is not None:
            text += r"\," + _sd_text(summary["sd"][key])
        out.append(text)
    return out


def _sd_text(sd: float) -> str:
    return rf"{{\scriptsize$\pm${_x100(sd)}}}"


def _scored_on(runs: Sequence[Mapping]) -> str:
    return rf"{latex_escape(runs[0]['split'])} split, {runs[0]['n_pairs']} pairs"


# -- the tables -----------------------------------------------------------------------------------
def _ablation_table(runs: dict[str, list[dict]], baseline: list[dict] | None, label: str, suffix: str) -> list[str]:
    summaries = {v: summarise_runs(r) for v, r in runs.items()}
    best = _best(list(summaries.values()), METRIC_KEYS)
    body = [_row(["Model", *(METRIC_LABELS[k] for k in METRIC_KEYS)]), r"\midrule"]
    body += [_row([latex_escape(VARIANT_LABELS[v]), *_cells(s, METRIC_KEYS, best)]) for v, s in summaries.items()]
    if baseline is not None:
        body += [r"\midrule", _row([latex_escape(BASELINE_LABEL), *_cells(summarise_runs(baseline), METRIC_KEYS, {})])]
    first = next(iter(runs.values()))
    caption = (rf"Ablation on {latex_escape(label)}, {_scored_on(first)}; scores $\times$100, {_seed_note(runs)}. "
               r"Bold: best of the three variants per column. The constant-caption row is a floor: "
               r"every pair gets the most frequent training caption.")
    return _table(body, "l" + "r" * len(METRIC_KEYS), caption, "tab:ablation" + suffix)


def _published_table(adapt: list[dict], label: str, dataset: str, comparable: bool, suffix: str,
                     released: dict | None = None) -> list[str]:
    pub = CAPTIONING[dataset]
    summary = summarise_runs(adapt)
    reproduced = [_x100(summary["mean"][k]) for k in METRIC_KEYS]
    body = [_row(["", *(METRIC_LABELS[k] for k in METRIC_KEYS)]), r"\midrule",
            _row([r"Reproduced, CLIP4IDC (with adaptation)", *reproduced])]
    if summary["n"] > 1:
        # The reproduction's own seed spread, to judge against the published one below.
        n = summary["n"]
        values = {k: [r["metrics"][k] for r in adapt] for k in METRIC_KEYS}
        body += [_row([f"Reproduced, sd over {n} seeds", *(_x100(summary["sd"][k]) for k in METRIC_KEYS)]),
                 _row([f"Reproduced, range over {n} seeds",
                       *(f"{_x100(min(values[k]))}--{_x100(max(values[k]))}" for k in METRIC_KEYS)])]
    if released is not None:
        body += [r"\midrule", _row([RELEASED_LABEL, *(_x100(released["metrics"][k]) for k in METRIC_KEYS)])]
    body += [r"\midrule", _row(["Published, CLIP4IDC", *(_published(pub.metrics.get(k)) for k in METRIC_KEYS)])]
    spreads = SEED_SPREAD.get(dataset, {})
    spread_notes = []
    if spreads:
        n_seeds = next(iter(spreads.values())).n_seeds
        body.append(_row([f"Published, mean of {n_seeds} seeds",
                          *(_published(spreads[k].mean) if k in spreads else "--" for k in METRIC_KEYS)]))
        ranged = {k: s for k, s in spreads.items() if s.min is not None}
        if ranged:
            body.append(_row([f"Published, range over {n_seeds} seeds",
                              *(f"{_published(ranged[k].min)}--{_published(ranged[k].max)}" if k in ranged
                                else "--" for k in METRIC_KEYS)]))
        sds = ", ".join(f"{METRIC_LABELS[k]} sd {_published(s.sd)}" for k, s in spreads.items()
                        if s.sd is not None)
        sources = "; ".join(dict.fromkeys(s.source for s in spreads.values()))  # unique, in order
        spread_notes.append(f"Seed spread ({n_seeds} seeds{', ' + sds if sds else ''}): {sources}")
    seeds = "" if summary["n"] == 1 else f" (mean of {summary['n']} seeds)"
    ran = (rf"The reproduction{seeds} ran on {latex_escape(label)} ({latex_escape(adapt[0]['split'])} split, "
           rf"{adapt[0]['n_pairs']} pairs)")
    if comparable:
        judged = (rf"{ran}, the published setting ({latex_escape(pub.setting)}). Judge it against the published "
                  r"seed spread where one is given, not against a single run.")
    else:
        judged = (rf"{ran} and is \textbf{{NOT comparable}} to the published numbers, which are for "
                  rf"{latex_escape(pub.dataset)} ({latex_escape(pub.setting)}): they are shown for orientation only.")
    caption = (rf"Reproduced vs published, scores $\times$100. {judged} Published: {latex_escape(pub.source)}."
               + "".join(f" {latex_escape(n)}." for n in spread_notes)
               + ("" if released is None else " " + _RELEASED_NOTE))
    return _table(body, "l" + "r" * len(METRIC_KEYS), caption, "tab:published" + suffix)


def _retrieval_table(retrieval: dict, label: str, dataset: str, comparable: bool, suffix: str,
                     released: dict | None = None) -> list[str]:
    fmt = {"R@1": "{:.2f}", "R@5": "{:.2f}", "R@10": "{:.2f}", "MedR": "{:.1f}", "MeanR": "{:.2f}"}
    body = [_row(["", "Direction", *RANK_KEYS]), r"\midrule"]
    rows = [("Reproduced", retrieval)] + ([(RELEASED_LABEL, released)] if released is not None else [])
    for n, (what, scores) in enumerate(rows):
        if n:
            body.append(r"\midrule")
        for i, (direction, name) in enumerate(_DIRECTIONS.items()):
            body.append(_row([what if i == 0 else "", name,
                              *(fmt[k].format(float(scores[direction][k])) for k in RANK_KEYS)]))
    pub = RETRIEVAL.get(dataset)
    published_note = ""
    if pub is not None:
        body.append(r"\midrule")
        for i, (direction, name) in enumerate(_DIRECTIONS.items()):
            block = getattr(pub, direction)
            body.append(_row(["Published" if i == 0 else "", name,
                              *(_published(block.get(k)) for k in RANK_KEYS)]))
        published_note = (rf" Published: {latex_escape(pub.dataset)} ({latex_escape(pub.setting)}), "
                          rf"{latex_escape(pub.source)}" + ("." if comparable else
                          "; NOT comparable to the reproduction, shown for orientation only."))
    caption = (rf"Adaptation-stage retrieval on {latex_escape(label)} "
               rf"({latex_escape(retrieval['split'])} split, {retrieval['n_pairs']} pairs, "
               rf"{retrieval['n_texts']} captions): T-IP ranks every caption against all pairs, IP-T "
               r"ranks every pair against all caption groups (max over a group). R@K in percent; "
               r"MedR and MeanR are 1-based ranks." + published_note
               + ("" if released is None else " " + _RELEASED_RETRIEVAL_NOTE))
    return _table(body, "ll" + "r" * len(RANK_KEYS), caption, "tab:retrieval" + suffix)


def paired_tests(runs: Mapping[str, list[dict]]) -> dict[tuple[str, str], dict[str, PairedTest]]:
    """{(a, b): {metric: paired test of a - b over seeds}} for the `PAIRS` whose variants are in `runs`."""
    return {(a, b): {m: paired_test(runs[a], runs[b], m, a=a, b=b) for m in MAIN_METRICS}
            for a, b in PAIRS if a in runs and b in runs}


def _paired_table(runs: dict[str, list[dict]], label: str, suffix: str) -> list[str]:
    tests = paired_tests(runs)  # raises naming both variants when their seeds differ
    if not tests:
        return [f"% No paired test on {latex_escape(label)}: it needs two variants, got {list(runs)}.", ""]
    first = next(iter(next(iter(tests.values())).values()))  # every test of a run set has the same seeds
    n = first.n
    if n < 2:
        return [f"% No paired test on {latex_escape(label)}: one seed per variant; a test over seeds "
                "needs at least two (`seeds` in params.yaml).", ""]
    groups = len(MAIN_METRICS)
    body = [_row(["", *(rf"\multicolumn{{2}}{{c}}{{{METRIC_LABELS[m]}}}" for m in MAIN_METRICS)]),
            "".join(rf"\cmidrule(lr){{{2 + 2 * i}-{3 + 2 * i}}}" for i in range(groups)),
            _row(["Pair (first vs second)", *([r"$\Delta$", "$p$"] * groups)]), r"\midrule"]
    undefined = False
    for (a, b), by_metric in tests.items():
        cells = []
        for m in MAIN_METRICS:
            test = by_metric[m]
            undefined |= test.reason == IDENTICAL
            cells += [_signed_x100(test.mean_diff), "--" if test.p is None else _p_value(test.p)]
        body.append(_row([f"{SHORT_LABELS[a]} vs {SHORT_LABELS[b]}", *cells]))
    seeds = ", ".join(latex_escape(str(s)) for s in first.seeds)
    caption = (rf"Paired $t$-test between variants on {latex_escape(label)} ({_scored_on(next(iter(runs.values())))}): "
               rf"two-sided, over $n={n}$ seeds ({seeds}), runs paired by seed (a seed gives both variants the same "
               rf"data order and captioner initialisation); $n-1={n - 1}$ degrees of freedom. "
               r"$\Delta$: mean over seeds of first minus second, scores $\times$100; $p$: two-sided $p$ value. "
               rf"With {n} seeds the test has little power and $p$ is coarse, and it assumes normally distributed "
               r"differences: read $p$ as a rough guide, not a verdict."
               + (r" --: the difference is the same for every seed, so $t$ is undefined." if undefined else ""))
    return _table(body, "l" + "rr" * groups, caption, "tab:paired" + suffix)


def _pertype_table(runs: dict[str, list[dict]], baseline: list[dict] | None, label: str,
                   suffix: str) -> list[str]:
    groups = dict(runs) | ({"constant baseline": baseline} if baseline is not None else {})
    sets = pair_sets(groups, f"per-type table on {label}")
    if not sets:
        return [f"% No per-type table on {latex_escape(label)}: the metric files score no change / no-change "
                "or change-type pair sets (the data has none).", ""]

    def view(group: list[dict]) -> dict:
        # One summary per pair set, laid out as one row: set name -> CIDEr mean and sd.
        per_set = {s: summarise_runs(group, s) for s in sets}
        return {"mean": {s: v["mean"]["CIDEr"] for s, v in per_set.items()},
                "sd": {s: v["sd"]["CIDEr"] for s, v in per_set.items()}}

    summaries = {v: view(r) for v, r in runs.items()}
    best = _best(list(summaries.values()), list(sets))
    body = [_row(["Model", *(s[0].upper() + s[1:] for s in sets)]), r"\midrule"]
    body += [_row([latex_escape(VARIANT_LABELS[v]), *_cells(s, list(sets), best)]) for v, s in summaries.items()]
    if baseline is not None:
        body += [r"\midrule", _row([latex_escape(BASELINE_LABEL), *_cells(view(baseline), list(sets), {})])]
    counts = ", ".join(f"{name} {n}" for name, n in sets.items())
    caption = (rf"CIDEr $\times$100 per pair set on {latex_escape(label)} ({_scored_on(next(iter(runs.values())))} "
               rf"in total), {_seed_note(runs)}. Each set is scored as a corpus of its own (DUDA's protocol): "
               r"CIDEr's document frequencies come from that set's references, so a set's score is not a share "
               rf"of the total in Table~\ref{{tab:ablation{suffix}}}. Pairs per set: {latex_escape(counts)}. "
               r"Change: all change pairs; no-change: the distractor pairs; then the change pairs of each type. "
               r"Bold: best of the three variants per column.")
    return _table(body, "l" + "r" * len(sets), caption, "tab:pertype" + suffix)


def ablation_overview(datasets: Mapping[str, Mapping[str, dict | list[dict]]],
                      labels: Mapping[str, str]) -> list[str]:
    """The paper's ablation layout across datasets (`tab:ablation-overview`): variants x datasets.

    `datasets`: {dataset key: {variant: metric content or list of them, one per seed}}, in print order;
    `labels`: {dataset key: its label}. Cells: B-4, METEOR, ROUGE-L, CIDEr ×100, the mean over seeds
    (bold: the best variant per column of a dataset) with the sample sd on a row below where there are
    several seeds; "--" where a dataset lacks a variant.
    """
    if not datasets:
        raise ValueError("ablation_overview: expected at least one dataset, got none")
    missing = [k for k in datasets if k not in labels]
    if missing:
        raise ValueError(f"ablation_overview: no label for dataset(s) {missing}; labels has {list(labels)}")
    checked = {}
    for key, variants in datasets.items():
        checked[key] = check_variants(variants, f"datasets[{key!r}]")
        _check_same_set(checked[key], f"datasets[{key!r}]")
    summaries = {key: {v: summarise_runs(r) for v, r in runs.items()} for key, runs in checked.items()}
    best = {key: _best(list(s.values()), MAIN_METRICS) for key, s in summaries.items()}
    width = len(MAIN_METRICS)
    body = [_row(["", *(rf"\multicolumn{{{width}}}{{c}}{{{latex_escape(labels[k])}}}" for k in datasets)]),
            "".join(rf"\cmidrule(lr){{{2 + width * i}-{1 + width * (i + 1)}}}" for i in range(len(datasets))),
            _row(["Model", *([METRIC_LABELS[m] for m in MAIN_METRICS] * len(datasets))]), r"\midrule"]
    for variant, name in VARIANT_LABELS.items():
        found = [summaries[key].get(variant) for key in datasets]
        if not any(found):
            continue
        # The sd goes on a row of its own below the means: 12 columns of "mean ± sd" side by side
        # would have to be shrunk to an unreadable size to fit a page.
        means, sds = [], []
        for key, summary in zip(datasets, found):
            means += ["--"] * width if summary is None else _cells(summary, MAIN_METRICS, best[key], sd=False)
            sds += [""] * width if summary is None or summary["n"] < 2 else \
                [_sd_text(summary["sd"][m]) for m in MAIN_METRICS]
        body.append(_row([latex_escape(name), *means]))
        if any(sds):
            body.append(_row(["", *sds]))
    notes = {k: _seed_note(r) for k, r in checked.items()}
    same = len(set(notes.values())) == 1  # then say it once
    scored = "; ".join(rf"{latex_escape(labels[k])}: {_scored_on(next(iter(r.values())))}"
                       + ("" if same else f", {notes[k]}") for k, r in checked.items())
    caption = (r"Ablation across datasets (the paper's layout): scores $\times$100, mean over seeds with the "
               r"sample sd ($\pm$) on the line below where there are several seeds. Bold: best variant per "
               rf"column within a dataset. Sets: {scored}" + (f"; {next(iter(notes.values()))}." if same else "."))
    return _table(body, "l" + "r" * width * len(datasets), caption, "tab:ablation-overview")


HEADER = ["% Generated by `clip4idc report` from metric files; do not edit by hand.",
          r"% Needs \usepackage{booktabs} (rules) and \usepackage{graphicx} (\resizebox: wide tables fit the line).",
          ""]


def dataset_tables(*, variants: Mapping[str, dict | list[dict]], baseline: dict | list[dict] | None,
                   retrieval: dict | None, dataset_label: str, published_dataset: str = "clevr_change",
                   comparable: bool = False, key: str | None = None, released: dict | None = None,
                   released_retrieval: dict | None = None) -> list[str]:
    """One dataset's tables: ablation, reproduced vs published (needs variant 'adapt'), paired test
    between variants over seeds (needs two seeds), per pair set (needs `subsets` in the metric
    files) and, if `retrieval`, adaptation retrieval. A table that cannot be made is a LaTeX comment.

    `comparable`: the run used the very dataset the published numbers are for (not a stand-in).
    `key` suffixes the LaTeX labels (tab:ablation:<key>) so several datasets fit in one file.
    `released` / `released_retrieval`: the authors' released captioner's metric file and their adaptation
    checkpoint's retrieval file (stage `released`), a row each beside the reproduced and published numbers;
    the captioner must have been scored on the reproduction's set.
    """
    runs = check_variants(variants)
    base = as_runs(baseline, "baseline") if baseline is not None else None
    if published_dataset not in CAPTIONING:
        raise ValueError(f"published_dataset: no published numbers for {published_dataset!r}; "
                         f"known: {sorted(CAPTIONING)}")
    if released is not None:
        released = as_runs(released, "released")[0]
    _check_same_set(runs | ({"baseline": base} if base else {}) | ({"released": [released]} if released else {}),
                    dataset_label)
    if retrieval is not None:
        retrieval = validate_retrieval_file(retrieval, "retrieval")
    if released_retrieval is not None:
        if retrieval is None:
            raise ValueError("released_retrieval: given without the reproduction's retrieval file to set it beside")
        released_retrieval = validate_retrieval_file(released_retrieval, "released_retrieval")
        scored = {name: (r["split"], r["n_pairs"], r["n_texts"]) for name, r in
                  (("retrieval", retrieval), ("released_retrieval", released_retrieval))}
        if len(set(scored.values())) > 1:
            raise ValueError(f"{dataset_label}: retrieval files were scored on different sets "
                             f"(split, n_pairs, n_texts): {scored}")
    suffix = f":{key}" if key else ""

    lines = _ablation_table(runs, base, dataset_label, suffix)
    if "adapt" in runs:
        lines += _published_table(runs["adapt"], dataset_label, published_dataset, comparable, suffix, released)
    else:
        lines += ["% No reproduced-vs-published table: no metric file for variant 'adapt'.", ""]
    lines += _paired_table(runs, dataset_label, suffix)
    lines += _pertype_table(runs, base, dataset_label, suffix)
    if retrieval is not None:
        lines += _retrieval_table(retrieval, dataset_label, published_dataset, comparable, suffix, released_retrieval)
    return lines


def write_tables(out_path: str | os.PathLike, **tables) -> None:
    """Write one dataset's tables (`dataset_tables`' keyword arguments) as a LaTeX fragment."""
    write_text(out_path, "\n".join(HEADER + dataset_tables(**tables)))


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
