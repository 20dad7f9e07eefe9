"""Caption metrics through pycocoevalcap, as the CLIP4IDC authors report them (PAPER.md section 5).

BLEU-1..4, METEOR, ROUGE-L and CIDEr (pycocoevalcap's `Cider` is CIDEr-D) on captions tokenised
by pycocoevalcap's Java PTB tokenizer, every reference of a pair used. Values are pycocoevalcap's
raw ones (0-1 scale, CIDEr up to 10); tables multiply by 100. SPICE is optional (`spice=True`):
the authors do not report it, and it needs Stanford CoreNLP 3.6.0, whose jars pycocoevalcap
downloads on first use from a site a pipeline cannot rely on. It is computed only where those jars
are already installed (`spice_unavailable()` says why not), never downloaded here.

Empty hypotheses are legal: a decoder may stop at once, and a caption of punctuation only
("...") becomes "" after PTB tokenisation anyway. The Java tokenizer keeps empty lines (it runs
with -preserveLines), and BLEU, METEOR, ROUGE-L and CIDEr all score "" as 0 for that pair
without error (checked against pycocoevalcap 1.2), so an empty hypothesis is passed through
unchanged: it scores 0 and, for BLEU, shortens the corpus hypothesis length (brevity penalty).
"""
from __future__ import annotations

import contextlib
import os
import re
from collections import Counter
from pathlib import Path
from typing import Mapping

from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.spice import get_stanford_models as _spice_models
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

from ..io import read_json

METRIC_KEYS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr")
SPICE = "SPICE"  # an extra key of a scorer made with spice=True, where CoreNLP is installed
# The sentence-level scores `CaptionScorer.per_pair` gives: pycocoevalcap's per-image values of these metrics.
PER_PAIR_KEYS = ("BLEU-4", "METEOR", "CIDEr")

# The Java tokenizer reads one caption per line. pycocoevalcap replaces "\n" only; any other
# line break Java honours would shift every later caption onto the wrong pair id.
_LINE_BREAKS = re.compile("[\r\n\v\f\x1c\x1d\x1e\x85\u2028\u2029]")
_SHOW_IDS = 5  # how many offending ids an error message lists


class _Meteor(Meteor):
    """pycocoevalcap's METEOR wrapper with a shutdown that cannot hang.

    Upstream `__del__` takes the lock that `compute_score` holds while it talks to the JVM. If
    `compute_score` raised half-way (the JVM died, a line was not a number) the lock is never
    released and the interpreter would hang at exit; this `close` skips the lock.
    """

    def _stat(self, hypothesis_str: str, reference_list: list[str]) -> str:
        # A segment's METEOR statistics depend on its hypothesis and references only: scoring the same pair
        # again (in another subset, or an unchanged caption at the next epoch) reuses them, and the
        # aggregate (EVAL over the subset's statistics) is the one a fresh JVM would give.
        key = (hypothesis_str, tuple(reference_list))
        stats = self.__dict__.setdefault("_stats", {})
        if key not in stats:
            stats[key] = super()._stat(hypothesis_str, reference_list)
        return stats[key]

    def close(self) -> None:
        proc = getattr(self, "meteor_p", None)  # absent when `java` could not be started
        if proc is None:
            return
        self.meteor_p = None
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            with contextlib.suppress(Exception):
                stream.close()
        if proc.poll() is None:
            proc.kill()
        proc.wait()

    def __del__(self) -> None:
        self.close()


def spice_jars() -> list[str]:
    """The Stanford CoreNLP jars SPICE needs, where pycocoevalcap looks for them."""
    jar = os.path.join(_spice_models.SPICEDIR, _spice_models.SPICELIB, _spice_models.JAR)
    return [f"{jar}.jar", f"{jar}-models.jar"]


def spice_unavailable() -> str | None:
    """Why SPICE cannot run on this machine, or None when it can."""
    missing = [path for path in spice_jars() if not os.path.isfile(path)]
    if missing:
        return (f"Stanford CoreNLP 3.6.0 is not installed ({', '.join(missing)} missing); to score SPICE, unpack "
                f"{_spice_models.JAR}.jar and {_spice_models.JAR}-models.jar from {_spice_models.CORENLP}.zip "
                f"into {os.path.dirname(missing[0])}")
    return None


class CaptionScorer:
    """BLEU-1..4, METEOR, ROUGE-L, CIDEr (and with `spice=True`, SPICE) of predictions against references.

    METEOR runs in a JVM that takes seconds to start, so one scorer is meant to be reused across
    calls (every validation epoch, every variant) and closed at the end: use it as a context
    manager or call `close()`. The PTB tokenizer is a JVM started per call; a scorer keeps every
    caption's tokens, so a later call tokenises only captions it has not seen (the references of
    every validation epoch after the first, repeated predictions) and starts no JVM when there are none.
    """

    def __init__(self, *, spice: bool = False) -> None:
        self._tokenizer = PTBTokenizer()
        self._tokens: dict[str, str] = {}   # caption (line breaks replaced) -> its PTB tokens
        self._bleu, self._rouge, self._cider = Bleu(4), Rouge(), Cider()
        self._spice = None
        if spice:
            reason = spice_unavailable()
            if reason is not None:
                raise RuntimeError(f"SPICE was asked for but cannot run: {reason}")
            from pycocoevalcap.spice.spice import Spice
            self._spice = Spice()  # finds the jars in place: downloads nothing
        self._meteor: _Meteor | None = None
        self._closed = False
        self._start_meteor()

    def _start_meteor(self) -> None:
        try:
            self._meteor = _Meteor()
        except FileNotFoundError as err:
            raise RuntimeError("METEOR and the PTB tokenizer of pycocoevalcap need `java` on PATH "
                               f"(Java 8 or newer): {err}") from err

    # -- public API -------------------------------------------------------------------------
    def score(self, predictions: Mapping[str, str], references: Mapping[str, list[str]], *,
              pred_name: str = "predictions", ref_name: str = "references") -> dict[str, float]:
        """Corpus scores of `predictions` (id -> caption) against `references` (id -> captions).

        The id sets must be equal. Ids are scored in the order of `references`, which is what a
        direct pycocoevalcap call over the same dicts does (sums are order-sensitive in the last
        bits of a float). `pred_name`/`ref_name` name the inputs in error messages (e.g. file paths).
        """
        whole = "all"
        return self.score_subsets(predictions, references, {whole: list(references)},
                                  pred_name=pred_name, ref_name=ref_name)[whole]

    def score_subsets(self, predictions: Mapping[str, str], references: Mapping[str, list[str]],
                      subsets: Mapping[str, list[str]], *, pred_name: str = "predictions",
                      ref_name: str = "references") -> dict[str, dict[str, float]]:
        """Corpus scores (as `score` gives them) of each subset (name -> ids), each a corpus of its own, ids in
        the subset's order.

        The captions are tokenised once, not once per subset: the Java tokenizer treats every line on its
        own, so the tokens, and every score, are those of separate `score` calls (tested), at the cost
        of two JVM starts instead of two per subset.
        """
        gts, res = self._tokenized(predictions, references, pred_name, ref_name, subsets)
        return {name: self._metrics({i: gts[i] for i in ids}, {i: res[i] for i in ids})
                for name, ids in subsets.items()}

    def per_pair(self, predictions: Mapping[str, str], references: Mapping[str, list[str]], *,
                 pred_name: str = "predictions", ref_name: str = "references") -> dict[str, dict[str, float]]:
        """{pair id: {metric: score}} for PER_PAIR_KEYS: the per-image values pycocoevalcap computes beside
        the corpus score, on the whole of `references` at once, so CIDEr-D's document frequencies are
        those of all the references passed (a split's: what its corpus CIDEr uses). BLEU-4 is
        pycocoevalcap's sentence BLEU (its smoothing, 'closest' reference length); METEOR the JVM's
        segment score. Ids in the order of `references`."""
        gts, res = self._tokenized(predictions, references, pred_name, ref_name)
        ids = list(references)
        _, bleu = self._bleu.compute_score(gts, res, verbose=0)
        _, meteor = self._run_meteor(gts, res)
        _, cider = self._cider.compute_score(gts, res)
        columns = {"BLEU-4": bleu[3], "METEOR": meteor, "CIDEr": cider}
        return {i: {key: float(columns[key][k]) for key in PER_PAIR_KEYS} for k, i in enumerate(ids)}

    def close(self) -> None:
        """Stop the METEOR JVM. The scorer cannot be used afterwards."""
        self._closed = True
        if self._meteor is not None:
            self._meteor.close()
            self._meteor = None

    def __enter__(self) -> "CaptionScorer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- internals --------------------------------------------------------------------------
    def _tokenized(self, predictions: Mapping[str, str], references: Mapping[str, list[str]], pred_name: str,
                   ref_name: str, subsets: Mapping[str, list[str]] | None = None
                   ) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
        """The inputs (and `subsets`) checked, then as pycocoevalcap's tokenised gts / res, in the order of
        `references`: no JVM starts for inputs that would be refused."""
        if self._closed:
            raise RuntimeError("this CaptionScorer was closed; create a new one")
        check_caption_inputs(predictions, references, pred_name, ref_name)
        known = set(references)
        for name, ids in (subsets or {}).items():
            if not ids or not set(ids) <= known:
                raise ValueError(f"subset {name!r}: expected a non-empty list of ids of {ref_name}")
        return (self._tokenize({i: references[i] for i in references}),
                self._tokenize({i: [predictions[i]] for i in references}))

    def _metrics(self, gts: dict[str, list[str]], res: dict[str, list[str]]) -> dict[str, float]:
        """The scores of tokenised captions (pycocoevalcap's gts / res), in the dicts' id order."""
        bleu, _ = self._bleu.compute_score(gts, res, verbose=0)
        meteor, _ = self._run_meteor(gts, res)
        rouge, _ = self._rouge.compute_score(gts, res)
        cider, _ = self._cider.compute_score(gts, res)
        values = [*bleu, meteor, rouge, cider]
        scores = {key: float(value) for key, value in zip(METRIC_KEYS, values)}
        if self._spice is not None:
            scores[SPICE] = float(self._spice.compute_score(gts, res)[0])
        return scores

    def _run_meteor(self, gts: dict[str, list[str]], res: dict[str, list[str]]) -> tuple[float, list[float]]:
        if self._meteor is None:  # a previous call failed and stopped the JVM: start a new one
            self._start_meteor()
        try:
            return self._meteor.compute_score(gts, res)
        except Exception:
            # the JVM is in an unknown state (and upstream keeps its lock held): drop it
            self._meteor.close()
            self._meteor = None
            raise

    def _tokenize(self, captions: dict[str, list[str]]) -> dict[str, list[str]]:
        """id -> captions, each replaced by its PTB tokens. The Java tokenizer reads each line on its own
        (-preserveLines), so a caption's tokens do not depend on the captions beside it: those seen before
        are reused and only new ones are sent, one per id."""
        lines = {i: [_LINE_BREAKS.sub(" ", c) for c in caps] for i, caps in captions.items()}
        new = sorted({c for caps in lines.values() for c in caps} - self._tokens.keys())
        if new:
            tokens = self._tokenizer.tokenize({str(k): [{"caption": c}] for k, c in enumerate(new)})
            # PTBTokenizer pairs its output lines with ids by position; a lost or extra line would
            # silently score captions against the wrong pair, so check the counts came back intact.
            wrong = [new[k] for k in range(len(new)) if len(tokens.get(str(k), ())) != 1]
            if wrong:
                raise RuntimeError(f"the PTB tokenizer returned the wrong number of lines for "
                                   f"{len(wrong)} captions, e.g. {wrong[:_SHOW_IDS]}")
            self._tokens.update((c, tokens[str(k)][0]) for k, c in enumerate(new))
        return {i: [self._tokens[c] for c in caps] for i, caps in lines.items()}


def check_caption_inputs(predictions, references, pred_name: str = "predictions",
                         ref_name: str = "references") -> None:
    """Raise ValueError unless predictions is {id: str}, references is {id: [str, ...]} (at least
    one each) and both cover the same ids. `pred_name`/`ref_name` name them in messages."""
    if not isinstance(predictions, Mapping):
        raise ValueError(f"{pred_name}: expected an object {{pair id: caption}}, "
                         f"got {type(predictions).__name__}")
    if not isinstance(references, Mapping):
        raise ValueError(f"{ref_name}: expected an object {{pair id: [caption, ...]}}, "
                         f"got {type(references).__name__}")
    if not references:
        raise ValueError(f"{ref_name}: no pair ids to score")
    only_pred = [i for i in predictions if i not in references]
    only_ref = [i for i in references if i not in predictions]
    if only_pred or only_ref:
        raise ValueError(
            f"{pred_name} and {ref_name} must cover the same pair ids: {len(predictions)} vs "
            f"{len(references)} ids; {len(only_ref)} missing from {pred_name} "
            f"(e.g. {sorted(only_ref, key=str)[:_SHOW_IDS]}), {len(only_pred)} missing from {ref_name} "
            f"(e.g. {sorted(only_pred, key=str)[:_SHOW_IDS]})")
    bad = [i for i, c in predictions.items() if not isinstance(c, str)]
    if bad:
        raise ValueError(f"{pred_name}: expected one caption string per pair id; "
                         f"{len(bad)} ids are not strings, e.g. {bad[:_SHOW_IDS]}")
    bad = [i for i, refs in references.items()
           if not isinstance(refs, list) or not refs or not all(isinstance(r, str) for r in refs)]
    if bad:
        raise ValueError(f"{ref_name}: expected a non-empty list of caption strings per pair id; "
                         f"{len(bad)} ids are not, e.g. {bad[:_SHOW_IDS]}")


def score_files(predictions_json: str | Path, references_json: str | Path,
                scorer: CaptionScorer | None = None) -> dict[str, float]:
    """`CaptionScorer.score` on two JSON files; a scorer is created (and closed) if none is given."""
    predictions, references = read_json(predictions_json), read_json(references_json)
    names = dict(pred_name=str(predictions_json), ref_name=str(references_json))
    if scorer is not None:
        return scorer.score(predictions, references, **names)
    with CaptionScorer() as own:
        return own.score(predictions, references, **names)


def normalize_caption(caption: str) -> str:
    """Lower case, outer whitespace stripped, inner whitespace runs collapsed to one space."""
    return " ".join(caption.lower().split())


def most_frequent_caption(captions: list[str]) -> str:
    """The most frequent caption (normalised by `normalize_caption`), for the constant baseline.

    Ties go to the lexicographically smallest, so the result does not depend on the order of
    `captions`. Blank captions are not candidates.
    """
    bad = [c for c in captions if not isinstance(c, str)]
    if bad:
        raise ValueError(f"most_frequent_caption: expected caption strings, got {bad[:_SHOW_IDS]}")
    counts = Counter(normalize_caption(c) for c in captions)
    counts.pop("", None)
    if not counts:
        raise ValueError("most_frequent_caption: expected at least one non-blank caption")
    return min(counts, key=lambda c: (-counts[c], c))
