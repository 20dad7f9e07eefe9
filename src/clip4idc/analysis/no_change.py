"""Whether a caption says that nothing changed.

CLEVR-Change (and our synthetic stand-in) describe a distractor pair with a handful of fixed
sentences, but a decoder paraphrases them, so detection goes by phrase patterns rather than by
a list of sentences. The patterns must stay silent on change captions, whose referring
expressions use "the same" ("the same color as the ...") and "no" ("is no longer there").
"""
from __future__ import annotations

import re

__all__ = ["plain_caption", "says_no_change"]

_NOT = re.compile(r"\s*n't\b")             # PTB splits "didn't" into "did n't"
_FINAL_PERIODS = re.compile(r"[\s.]+$")
_SPACES = re.compile(r"\s+")


def plain_caption(caption: str) -> str:
    """Lower case, single spaces, "n't" spelt "not", no final period (with or without PTB's space)."""
    text = _NOT.sub(" not", caption.lower())
    return _SPACES.sub(" ", _FINAL_PERIODS.sub("", text)).strip()


# "the same" alone is a referring expression in CLEVR ("the same size as the blue cube"), so after
# a copula or a verb of seeming it counts only when nothing, or a comparison with the other image,
# follows it.
_SAME_TAIL = (r"(?=$|\s+(?:as\s+(?:before|it\s+was|they\s+were|in\s+the\b|the\s+(?:before|first|original|"
              r"previous|other)\b)|in\s+both\b|before\s+and\s+after\b|to\s+each\s+other\b|at\s+all\b))")
_PATTERNS = tuple(re.compile(p) for p in (
    # "there is no change", "no difference", "there are not any changes", "no visible change"
    r"\b(?:no|not\s+any|zero|without\s+any)\s+(?:\w+\s+)?(?:changes?|differences?|modifications?|alterations?)\b",
    # "nothing has changed", "nothing was modified", "nothing in the scene moved", "nothing is different"
    r"\bnothing\b(?:\s+\w+){0,3}?\s+(?:chang|modif|alter|differ|happen|mov|new|add|remov)\w*",
    # "the scene did not change", "it has not changed", "the images have not been modified"; anchored at
    # the end so that a negated verb inside a longer description does not count.
    r"\b(?:did|does|do|has|have|had|is|are|was|were)\s+not\s+(?:been\s+)?(?:really\s+)?"
    r"(?:change|changed|changes|modified|altered|moved)(?:\s+at\s+all|\s+anything|\s+in\s+any\s+way)?$",
    # "remains the same", "stayed the same", "remain identical": these verbs never occur in change captions
    r"\b(?:remain|remains|remained|stay|stays|stayed)\s+(?:exactly\s+|just\s+|still\s+)?"
    r"(?:the\s+same|identical|unchanged)\b",
    # "the scene is the same as before", "the two images look the same", "everything is the same"
    r"\b(?:is|are|was|were|look|looks|looked|seem|seems|seemed|appear|appears|appeared)\s+(?:to\s+be\s+)?"
    r"(?:still\s+|exactly\s+|just\s+|completely\s+|entirely\s+)?the\s+same" + _SAME_TAIL,
    r"\bsame\s+as\s+before\b",
    # "the two scenes seem identical", "the scene is unchanged", "unchanged"
    r"\b(?:identical|unchanged|unaltered|unmodified)\b",
))


def says_no_change(caption: str) -> bool:
    """True when the caption is phrased as "nothing changed"; False for one describing a change."""
    text = plain_caption(caption)
    return any(p.search(text) for p in _PATTERNS)
