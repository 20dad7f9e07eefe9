"""The error analysis in the report, from the files `clip4idc analyze` wrote (analysis/pairs.py):

- `failure_table`: per variant (and the constant caption) the share of change pairs whose change was missed,
  of distractors given a change (hallucinated), and of change pairs given the wrong change type, the right type
  but the wrong object, or a caption the grammar cannot read: mean ± sd over seeds;
- `attribute_table`: of the change pairs given the right type, how often each attribute of the object (or the
  new colour / material) is the wrong one;
- `gallery_examples`: the failure gallery's pairs: per change type, the adapted model's lowest-scoring pair
  (per-pair CIDEr-D of the first seed), with every variant's caption, for `qualitative.qualitative_plot`.

Analysis file (one per variant and seed, and constant.json): {"variant", "seed", "split", "grammar", "n_pairs",
"counts": {"n_change", "n_no_change", "right", "missed", "hallucinated", and with the grammar "wrong_type",
"wrong_object", "unparsed"}, "pairs": [{"pair_id", "caption", "scores": {...}, "outcome", ...}], and with the
grammar "confusion" and "wrong_attributes"}.
"""
from __future__ import annotations

from pathlib import Path
from statistics import mean, stdev
from typing import Mapping, Sequence

from ..analysis.outcomes import FAILURE_OF, SHARES, WRONG_ATTRIBUTES, failure_rates
from ..data.records import CHANGE_TYPES
from ..io import read_json
from ..params import VARIANTS
from . import BASELINE_LABEL, VARIANT_LABELS
from .qualitative import pair_kind
from .tables import RELEASED_LABEL, _row, _table, latex_escape

ANALYSIS_KEYS = ("variant", "seed", "split", "grammar", "n_pairs", "counts", "pairs")
FAILURE_LABELS = {"right": "Right", "missed": "Missed change", "hallucinated": "Hallucinated change",
                  "wrong_type": "Wrong type", "wrong_object": "Wrong object", "unparsed": "Unparsed"}
ATTRIBUTE_LABELS = {"size": "Size", "color": "Colour", "material": "Material", "shape": "Shape",
                    "new": "New colour / material"}
_OTHER_LABELS = {"constant": BASELINE_LABEL, "released": RELEASED_LABEL}
GALLERY_SCORE = "CIDEr"   # the per-pair score the gallery ranks by (CIDEr-D)
GALLERY_VARIANT = "adapt"


def _check(content, source: str) -> dict:
    if not isinstance(content, dict) or (missing := [k for k in ANALYSIS_KEYS if k not in content]):
        raise ValueError(f"{source}: not an analysis file (`clip4idc analyze`): missing keys "
                         f"{missing if isinstance(content, dict) else list(ANALYSIS_KEYS)}")
    counts = content["counts"]
    for failure in SHARES:
        if failure in counts and counts[failure] > counts.get(FAILURE_OF[failure], 0):
            raise ValueError(f"{source}: counts[{failure!r}] = {counts[failure]} exceeds "
                             f"{FAILURE_OF[failure]} = {counts.get(FAILURE_OF[failure])}")
    return content


def load_analyses(files: Mapping[str, Path], seeds: Sequence[int]) -> tuple[dict[str, list[dict]], dict[str, dict]]:
    """One dataset's analysis files (`build.analysis_files`: "<variant>/seed<seed>", "constant", maybe "released")
    → ({variant: [analysis per seed]}, {"constant": its analysis, and "released" where given})."""
    read = {name: _check(read_json(path), str(path)) for name, path in files.items()}
    runs = {v: [read[f"{v}/seed{s}"] for s in seeds] for v in VARIANTS}
    splits = {(a["split"], a["n_pairs"]) for a in read.values()}
    if len(splits) > 1:
        raise ValueError(f"analysis files of different splits or sizes {sorted(splits)}: "
                         f"{sorted(map(str, files.values()))}")
    return runs, {name: a for name, a in read.items() if name in ("constant", "released")}


def _percent(values: Sequence[float | None]) -> str:
    """Mean ×100 with one decimal, ± the sample sd where there are several seeds; "--" where undefined."""
    if any(v is None for v in values):
        return "--"
    text = f"{100 * mean(values):.1f}"
    if len(values) > 1:
        text += rf"\,{{\scriptsize$\pm${100 * stdev(values):.1f}}}"
    return text


def failure_table(runs: Mapping[str, list[dict]], others: Mapping[str, Mapping], label: str, suffix: str) -> list[str]:
    """The failure table (`tab:failures<suffix>`): a row per variant, then the constant caption and (where given)
    the authors' released captioner (`others`, from `load_analyses`), a column per failure the data can show
    (hallucination needs distractors, the last three the CLEVR grammar)."""
    constant = others["constant"]
    rates = {v: [failure_rates(a["counts"]) for a in group] for v, group in runs.items()}
    rates |= {name: [failure_rates(a["counts"])] for name, a in others.items()}
    shown = [f for f in SHARES if any(r[f] is not None for group in rates.values() for r in group)]
    if not shown:
        return [f"% No failure table on {latex_escape(label)}: its data has neither change nor no-change pairs.", ""]
    body = [_row(["Model", *(FAILURE_LABELS[f] for f in shown)]), r"\midrule"]
    for v in runs:
        body.append(_row([latex_escape(VARIANT_LABELS[v]), *(_percent([r[f] for r in rates[v]]) for f in shown)]))
    body.append(r"\midrule")
    for name in others:
        body.append(_row([latex_escape(_OTHER_LABELS[name]), *(_percent([rates[name][0][f]]) for f in shown)]))
    counts = constant["counts"]
    seeds = len(next(iter(runs.values())))
    definitions = {
        "right": r"right: a change pair's caption names the right kind of change and, as far as it names them, the "
                 r"object's attributes and the new colour / material the references agree on",
        "missed": rf"missed change: a change pair's caption says no change (of {counts['n_change']} change pairs)",
        "hallucinated": rf"hallucinated change: a distractor's caption does not (of {counts['n_no_change']} "
                        r"no-change pairs)",
        "wrong_type": r"wrong type: the caption names another kind of change",
        "wrong_object": r"wrong object: the right kind of change, but an attribute of the object or the new colour "
                        r"/ material differs from what the references agree on",
        "unparsed": r"unparsed: the CLEVR-Change grammar cannot read the caption (counted, never guessed)",
    }
    caption = (rf"Failures on {latex_escape(label)} ({latex_escape(constant['split'])} split), per cent, "
               + (rf"mean $\pm$ sample sd over {seeds} seeds" if seeds > 1 else "one seed")
               + ". " + "; ".join(definitions[f] for f in shown)
               + r". Every column but the hallucinated one is a share of the change pairs; where the grammar runs they "
               r"add up to 100. "
               r"From the captions, references and manifest alone (\texttt{clip4idc analyze}).")
    return _table(body, "l" + "r" * len(shown), caption, "tab:failures" + suffix)


def attribute_table(runs: Mapping[str, list[dict]], label: str, suffix: str) -> list[str]:
    """Of the change pairs given the right change type, the share whose caption names a wrong value of each
    attribute (`tab:attributes<suffix>`); only where the grammar ran."""
    if not all("wrong_attributes" in a for group in runs.values() for a in group):
        return [f"% No wrong-attribute table on {latex_escape(label)}: its captions are not parsed (no grammar).", ""]

    def share(a: Mapping, attribute: str) -> float | None:
        n = a["wrong_attributes"]["n_right_type"]
        return a["wrong_attributes"][attribute] / n if n else None

    body = [_row(["Model", "Right type", *(ATTRIBUTE_LABELS[a] for a in WRONG_ATTRIBUTES)]), r"\midrule"]
    for v, group in runs.items():
        right_type = [a["wrong_attributes"]["n_right_type"] / a["counts"]["n_change"] if a["counts"]["n_change"]
                      else None for a in group]
        body.append(_row([latex_escape(VARIANT_LABELS[v]), _percent(right_type),
                          *(_percent([share(a, attr) for a in group]) for attr in WRONG_ATTRIBUTES)]))
    caption = (rf"Wrong focus on {latex_escape(label)}: of the change pairs whose caption names the right kind of "
               r"change (``Right type'', per cent of all change pairs), the per cent whose caption gives the object a "
               r"wrong size, colour, material or shape, or the wrong new colour / material, against what the "
               r"pair's references agree on; an attribute the caption leaves out is not wrong. A caption can be "
               r"wrong in several. Mean $\pm$ sample sd over seeds.")
    return _table(body, "l" + "r" * (1 + len(WRONG_ATTRIBUTES)), caption, "tab:attributes" + suffix)


def gallery_examples(manifest: Sequence[Mapping], first_seed: Mapping[str, Mapping], *,
                     per_kind: int = 1) -> list[dict]:
    """The failure gallery's pairs: for each change type (and the distractors), the `per_kind` pairs on which the
    adapted model's caption (first seed) scores lowest by per-pair CIDEr-D, ties in manifest order; without change
    types, the lowest-scoring pairs overall (5 × `per_kind`). `first_seed`: {variant: its first seed's analysis}.
    → examples for `qualitative.qualitative_plot`, each with a `note` naming the score and the outcome."""
    if GALLERY_VARIANT not in first_seed:
        raise ValueError(f"gallery_examples: no analysis of variant {GALLERY_VARIANT!r}")
    ranked = first_seed[GALLERY_VARIANT]["pairs"]
    by_id = {v: {p["pair_id"]: p for p in a["pairs"]} for v, a in first_seed.items()}
    entries = {m["pair_id"]: m for m in manifest}
    unknown = [p["pair_id"] for p in ranked if p["pair_id"] not in entries]
    if unknown:
        raise ValueError(f"gallery_examples: pairs {unknown[:5]} of the analysis are not in the manifest")
    order = {m["pair_id"]: k for k, m in enumerate(manifest)}
    present = {pair_kind(p) for p in ranked}
    # The change types in their usual order, then untyped change pairs and the distractors.
    kinds = [k for k in (*CHANGE_TYPES, "change", "no change") if k in present]
    typed = any(p["change_type"] for p in ranked)
    chosen = []
    for k in (kinds if typed else [None]):
        pool = [p for p in ranked if k is None or pair_kind(p) == k]
        pool.sort(key=lambda p: (p["scores"][GALLERY_SCORE], order[p["pair_id"]]))
        chosen += pool[:per_kind if typed else 5 * per_kind]
    examples = []
    for p in chosen:
        entry = entries[p["pair_id"]]
        outcome = p["outcome"].replace("_", " ")
        wrong = p.get("wrong_attributes") or []
        note = (f"{VARIANT_LABELS[GALLERY_VARIANT]}: CIDEr-D {100 * p['scores'][GALLERY_SCORE]:.1f}, {outcome}"
                + (f" ({', '.join(wrong)})" if wrong else ""))
        examples.append({"pair_id": p["pair_id"], "change_type": entry["change_type"], "changed": entry["changed"],
                         "before": entry["before"], "after": entry["after"], "references": list(entry["references"]),
                         "captions": {v: by_id[v][p["pair_id"]]["caption"] for v in VARIANT_LABELS if v in by_id},
                         "note": note})
    return examples
