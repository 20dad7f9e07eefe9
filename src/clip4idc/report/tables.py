"""results/tables.tex: the ablation, reproduced vs published, and adaptation retrieval (booktabs).

Inputs are the metric files the evaluate and adapt stages write; every number printed comes from
them or from `published.py`. The file is a fragment for `\\input{}` and needs `booktabs`.

Metric file: {"variant": str, "seed": int | null, "split": str, "n_pairs": int,
              "metrics": {"BLEU-1": float, ..., "CIDEr": float}}   (raw pycocoevalcap, 0-1 scale)
Retrieval file: {"split": str, "n_pairs": int, "n_texts": int,
                 "t2p": {"R@1", "R@5", "R@10", "MedR", "MeanR"}, "p2t": {...}}   (R@K in percent)

A variant may be given as one metric file's content or as a list of them (one per seed): a list
is printed as mean ± sample sd, so multi-seed tables need no other code path.
"""
from __future__ import annotations

import math
import os
import re
from statistics import mean, stdev
from typing import Mapping, Sequence

from ..io import read_json, write_text
from ..metrics.caption import METRIC_KEYS
from ..metrics.retrieval import RANK_KEYS
from . import BASELINE_LABEL, METRIC_LABELS, VARIANT_LABELS
from .published import CAPTIONING, RETRIEVAL, SEED_SPREAD

METRIC_FILE_KEYS = ("variant", "seed", "split", "n_pairs", "metrics")
RETRIEVAL_FILE_KEYS = ("split", "n_pairs", "n_texts", "t2p", "p2t")
# Raw pycocoevalcap ranges; a value outside them is almost surely already ×100.
_MAX_RAW = {key: 1.0 for key in METRIC_KEYS} | {"CIDEr": 10.0}
_DIRECTIONS = {"t2p": "T-IP", "p2t": "IP-T"}


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
    metrics = content["metrics"]
    if not isinstance(metrics, Mapping):
        raise ValueError(f"{source}: key 'metrics' must be an object, got {type(metrics).__name__}")
    for key in METRIC_KEYS:
        if key not in metrics:
            raise ValueError(f"{source}: missing key 'metrics.{key}' (expected {list(METRIC_KEYS)})")
        value = metrics[key]
        if not _is_number(value):
            raise ValueError(f"{source}: 'metrics.{key}' must be a finite number, got {value!r}")
        if not 0.0 <= value <= _MAX_RAW[key]:
            raise ValueError(f"{source}: 'metrics.{key}' = {value} is outside [0, {_MAX_RAW[key]:g}]; "
                             "metric files hold raw pycocoevalcap values (0-1 scale), not ×100")
    return dict(content)


def validate_retrieval_file(content, source: str) -> dict:
    _require_keys(content, RETRIEVAL_FILE_KEYS, source, "a retrieval file")
    for direction in _DIRECTIONS:
        block = content[direction]
        if not isinstance(block, Mapping):
            raise ValueError(f"{source}: key {direction!r} must be an object with keys {list(RANK_KEYS)}")
        for key in RANK_KEYS:
            if key not in block:
                raise ValueError(f"{source}: missing key '{direction}.{key}' (expected {list(RANK_KEYS)})")
            if not _is_number(block[key]):
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


def summarise_runs(runs: Sequence[Mapping]) -> dict:
    """Mean and sample sd (None for one run) of each caption metric over runs, on the raw scale."""
    values = {key: [float(r["metrics"][key]) for r in runs] for key in METRIC_KEYS}
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
            raise ValueError(f"{source}: runs were scored on different sets "
                             f"({run['split']}/{run['n_pairs']} vs {checked[0]['split']}/{checked[0]['n_pairs']} pairs)")
    return checked


def check_variants(variants: Mapping) -> dict[str, list[dict]]:
    """Validate a {variant: metric content or list} mapping; return it in the paper's order."""
    if not variants:
        raise ValueError(f"variants: expected at least one of {list(VARIANT_LABELS)}")
    unknown = [v for v in variants if v not in VARIANT_LABELS]
    if unknown:
        raise ValueError(f"variants: unknown variant names {unknown}; expected some of {list(VARIANT_LABELS)}")
    return {v: as_runs(variants[v], f"variants[{v!r}]") for v in VARIANT_LABELS if v in variants}


# -- LaTeX helpers ------------------------------------------------------------------------------
_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                  "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                  "^": r"\textasciicircum{}"}
_LATEX_SPECIAL_RE = re.compile("|".join(re.escape(c) for c in _LATEX_SPECIAL))


def latex_escape(text: str) -> str:
    return _LATEX_SPECIAL_RE.sub(lambda m: _LATEX_SPECIAL[m.group()], str(text))


def _x100(value: float) -> str:
    return f"{100.0 * value:.2f}"


def _published(value: float | None) -> str:
    # str() of a float is its shortest repr, so a published "131.2" is printed as published.
    return "--" if value is None else str(float(value))


def _row(cells: Sequence[str]) -> str:
    return " & ".join(cells) + r" \\"


def _table(body: list[str], colspec: str, caption: str, label: str) -> list[str]:
    return [r"\begin{table}[t]", r"\centering", r"\small", rf"\caption{{{caption}}}",
            rf"\label{{{label}}}", rf"\begin{{tabular}}{{{colspec}}}", r"\toprule", *body,
            r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]


def _seed_note(runs: Mapping[str, list[dict]]) -> str:
    counts = {len(r) for r in runs.values()}
    if counts == {1}:
        seeds = sorted({r[0]["seed"] for r in runs.values()}, key=str)
        return "one run per variant (seed " + ", ".join(latex_escape(str(s)) for s in seeds) + ")"
    per = "; ".join(f"{VARIANT_LABELS[v]}: {len(r)}" for v, r in runs.items())
    return rf"mean $\pm$ sample sd over seeds ({latex_escape(per)})"


# -- the three tables ---------------------------------------------------------------------------
def _ablation_table(runs: dict[str, list[dict]], baseline: list[dict] | None, label: str, suffix: str) -> list[str]:
    summaries = {v: summarise_runs(r) for v, r in runs.items()}
    # Bold what a reader sees as best: compare the printed (rounded) values; ties all bold.
    best = {key: max(float(_x100(s["mean"][key])) for s in summaries.values()) for key in METRIC_KEYS} \
        if len(summaries) > 1 else {}

    def cells(summary: dict, bold: bool) -> list[str]:
        out = []
        for key in METRIC_KEYS:
            text = _x100(summary["mean"][key])
            if bold and key in best and float(text) == best[key]:
                text = rf"\textbf{{{text}}}"
            if summary["sd"][key] is not None:
                text += rf"\,{{\scriptsize$\pm${_x100(summary['sd'][key])}}}"
            out.append(text)
        return out

    body = [_row(["Model", *(METRIC_LABELS[k] for k in METRIC_KEYS)]), r"\midrule"]
    body += [_row([latex_escape(VARIANT_LABELS[v]), *cells(s, True)]) for v, s in summaries.items()]
    if baseline is not None:
        body += [r"\midrule", _row([latex_escape(BASELINE_LABEL), *cells(summarise_runs(baseline), False)])]
    first = next(iter(runs.values()))[0]
    caption = (rf"Ablation on {latex_escape(label)}, {latex_escape(first['split'])} split "
               rf"({first['n_pairs']} pairs); scores $\times$100, {_seed_note(runs)}. "
               r"Bold: best of the three variants per column. The constant-caption row is a floor: "
               r"every pair gets the most frequent training caption.")
    return _table(body, "l" + "r" * len(METRIC_KEYS), caption, "tab:ablation" + suffix)


def _published_table(adapt: list[dict], label: str, dataset: str, comparable: bool, suffix: str) -> list[str]:
    pub = CAPTIONING[dataset]
    summary = summarise_runs(adapt)
    reproduced = [_x100(summary["mean"][k]) for k in METRIC_KEYS]
    body = [_row(["", *(METRIC_LABELS[k] for k in METRIC_KEYS)]), r"\midrule",
            _row([r"Reproduced, CLIP4IDC (with adaptation)", *reproduced]),
            r"\midrule",
            _row(["Published, CLIP4IDC", *(_published(pub.metrics.get(k)) for k in METRIC_KEYS)])]
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
               + "".join(f" {latex_escape(n)}." for n in spread_notes))
    return _table(body, "l" + "r" * len(METRIC_KEYS), caption, "tab:published" + suffix)


def _retrieval_table(retrieval: dict, label: str, dataset: str, comparable: bool, suffix: str) -> list[str]:
    fmt = {"R@1": "{:.2f}", "R@5": "{:.2f}", "R@10": "{:.2f}", "MedR": "{:.1f}", "MeanR": "{:.2f}"}
    body = [_row(["", "Direction", *RANK_KEYS]), r"\midrule"]
    for i, (direction, name) in enumerate(_DIRECTIONS.items()):
        body.append(_row(["Reproduced" if i == 0 else "", name,
                          *(fmt[k].format(float(retrieval[direction][k])) for k in RANK_KEYS)]))
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
               r"MedR and MeanR are 1-based ranks." + published_note)
    return _table(body, "ll" + "r" * len(RANK_KEYS), caption, "tab:retrieval" + suffix)


HEADER = ["% Generated by `clip4idc report` from metric files; do not edit by hand.",
          r"% Needs \usepackage{booktabs}.", ""]


def dataset_tables(*, variants: Mapping[str, dict | list[dict]], baseline: dict | list[dict] | None,
                   retrieval: dict | None, dataset_label: str, published_dataset: str = "clevr_change",
                   comparable: bool = False, key: str | None = None) -> list[str]:
    """The ablation, reproduced-vs-published and (if `retrieval`) retrieval tables of one dataset.

    `comparable`: the run used the very dataset the published numbers are for (not a stand-in).
    `key` suffixes the LaTeX labels (tab:ablation:<key>) so several datasets fit in one file.
    """
    runs = check_variants(variants)
    base = as_runs(baseline, "baseline") if baseline is not None else None
    if published_dataset not in CAPTIONING:
        raise ValueError(f"published_dataset: no published numbers for {published_dataset!r}; "
                         f"known: {sorted(CAPTIONING)}")
    # Every row must describe the same test set, or the comparison means nothing.
    scored = {name: (r[0]["split"], r[0]["n_pairs"]) for name, r in
              [*runs.items(), *([("baseline", base)] if base else [])]}
    if len(set(scored.values())) > 1:
        raise ValueError(f"metric files were scored on different sets (split, n_pairs): {scored}")
    if retrieval is not None:
        retrieval = validate_retrieval_file(retrieval, "retrieval")
    suffix = f":{key}" if key else ""

    lines = _ablation_table(runs, base, dataset_label, suffix)
    if "adapt" in runs:
        lines += _published_table(runs["adapt"], dataset_label, published_dataset, comparable, suffix)
    else:
        lines += ["% No reproduced-vs-published table: no metric file for variant 'adapt'.", ""]
    if retrieval is not None:
        lines += _retrieval_table(retrieval, dataset_label, published_dataset, comparable, suffix)
    return lines


def write_tables(out_path: str | os.PathLike, **tables) -> None:
    """Write one dataset's tables (`dataset_tables`' keyword arguments) as a LaTeX fragment."""
    write_text(out_path, "\n".join(HEADER + dataset_tables(**tables)))


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
