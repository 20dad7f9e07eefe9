"""A grammar of CLEVR-Change's change captions: which change, to which object, to what.

A caption is an object phrase, an optional referring modifier, and a change phrase at its end
("the tiny yellow rubber cylinder that is behind the rubber block became brown"), or one of a few
prefix forms ("someone removed the red cube"). The object the caption names is the head phrase;
the objects inside the modifier only help to find it, so they are parsed but not returned.
Anything outside the grammar is unparsed (None) rather than guessed at: an error analysis
built on a wrong parse would blame the model for the parser's mistakes.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

from ..data.records import CHANGE_TYPES
from ..data.synthetic import COLORS, MATERIALS, SHAPES, SIZES, SYNONYMS
from .no_change import plain_caption, says_no_change
from .outcomes import ATTRIBUTES

__all__ = ["ATTRIBUTES", "CHANGE_KINDS", "ObjectRef", "ParsedCaption", "caption_truth", "parse_caption",
           "wrong_attributes"]

CHANGE_KINDS = CHANGE_TYPES + ("none",)

_CANONICAL = {"size": SIZES, "color": tuple(COLORS), "material": MATERIALS, "shape": SHAPES}
# Every word of CLEVR's vocabulary mapped to (attribute, canonical value).
_WORDS: dict[str, tuple[str, str]] = {
    word: (attribute, value)
    for attribute, values in _CANONICAL.items() for value in values for word in SYNONYMS.get(value, (value,))}
_GENERIC = ("thing", "object")   # a head noun that leaves the shape open


@dataclass(frozen=True)
class ObjectRef:
    """The object a caption names: canonical attribute values, None where the caption leaves one out."""
    size: str | None
    color: str | None
    material: str | None
    shape: str | None

    def __post_init__(self) -> None:
        for attribute in ATTRIBUTES:
            value = getattr(self, attribute)
            if value is not None and value not in _CANONICAL[attribute]:
                raise ValueError(f"{attribute} {value!r} is not one of {_CANONICAL[attribute]}")


@dataclass(frozen=True)
class ParsedCaption:
    change_type: str         # one of CHANGE_KINDS
    obj: ObjectRef | None    # None only for "none"
    new: str | None          # the colour / material changed to (canonical), for color/material changes

    def __post_init__(self) -> None:
        if self.change_type not in CHANGE_KINDS:
            raise ValueError(f"change type {self.change_type!r} is not one of {CHANGE_KINDS}")
        if (self.obj is None) != (self.change_type == "none"):
            needs = "names no" if self.change_type == "none" else "needs an"
            raise ValueError(f"a {self.change_type!r} caption {needs} object")
        if self.new is not None:
            allowed = {"color": _CANONICAL["color"], "material": _CANONICAL["material"]}.get(self.change_type, ())
            if self.new not in allowed:
                raise ValueError(f"new value {self.new!r} does not fit a {self.change_type!r} change")


def _alternatives(words) -> str:
    # Longest first, so that no alternative stops at a prefix of another.
    return "(?:" + "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True)) + ")"


_ATTR_WORD = _alternatives(w for w, (a, _) in _WORDS.items() if a != "shape")
_HEAD_WORD = _alternatives([w for w, (a, _) in _WORDS.items() if a == "shape"] + list(_GENERIC))
_COLOR_WORD = _alternatives(w for w, (a, _) in _WORDS.items() if a == "color")
_MATERIAL_WORD = _alternatives(w for w, (a, _) in _WORDS.items() if a == "material")

# An object inside a modifier: parsed so that junk is refused, but not captured.
_REF = rf"(?:(?:the|a|an)\s+)?(?:other\s+)?(?:{_ATTR_WORD}\s+)*{_HEAD_WORD}"
# CLEVR's relations: the four spatial ones and the same-attribute ones.
_RELATION = (rf"(?:(?:(?:to|on)\s+the\s+)?(?:left|right)(?:\s+side)?\s+of|behind|in\s+front\s+of"
             rf"|the\s+same\s+(?:size|colou?r|material|shape)\s+as)\s+{_REF}")
_CLAUSE = rf"(?:(?:that|which)\s+(?:is\s+|was\s+)?)?{_RELATION}"
_IMAGE = r"in\s+the\s+(?:before|after|first|second|original|new)\s+(?:image|scene|picture)"
_MODIFIER = rf"(?:{_CLAUSE}(?:\s+and\s+{_CLAUSE})*(?:\s+{_IMAGE})?|{_IMAGE})"
_OBJECT = rf"(?:other\s+)?(?P<attrs>(?:{_ATTR_WORD}\s+)*)(?P<head>{_HEAD_WORD})(?:\s+{_MODIFIER})?"

# Change phrases without a value, by the change they describe.
_EVENTS = {
    "add": ("has appeared", "appeared", "has been newly placed", "has been added", "was added", "is new"),
    "drop": ("has disappeared", "disappeared", "is missing", "is gone", "is no longer there", "was removed",
             "has been removed"),
    "move": ("changed its location", "moved", "has been moved", "was moved", "is in a different location",
             "changed its position"),
}
_EVENT_KIND = {phrase: kind for kind, phrases in _EVENTS.items() for phrase in phrases}
# "a new cube is visible" says it was added only because of "new"; without it, it says nothing.
_NEW_ONLY = ("is visible",)
# Verbs with a value, and which kinds of value each takes: "was made red" is not CLEVR.
_VALUE_VERBS = {"changed to": ("color", "material"), "became": ("color", "material"), "turned": ("color", "material"),
                "is now": ("color", "material"), "changed its color to": ("color",), "was made": ("material",)}


def _spaced(phrase: str) -> str:
    return r"\s+".join(re.escape(w) for w in phrase.split())


_SUBJECT_FORM = re.compile(
    rf"(?:(?:the|a|an)\s+)?(?P<new_adj>new\s+)?{_OBJECT}\s+"
    rf"(?:(?P<event>{'|'.join(_spaced(p) for p in sorted(list(_EVENT_KIND) + list(_NEW_ONLY), key=len, reverse=True))})"
    rf"|(?P<verb>{'|'.join(_spaced(v) for v in sorted(_VALUE_VERBS, key=len, reverse=True))})"
    rf"\s+(?P<value>{_COLOR_WORD}|{_MATERIAL_WORD}))")
_PREFIX_FORMS = (
    (re.compile(rf"someone\s+added\s+(?:(?:the|a|an)\s+)?(?:new\s+)?{_OBJECT}"), "add"),
    (re.compile(rf"there\s+is\s+(?:a|an)\s+new\s+{_OBJECT}"), "add"),
    (re.compile(rf"someone\s+removed\s+(?:(?:the|a|an)\s+)?{_OBJECT}"), "drop"),
    (re.compile(rf"someone\s+(?:moved|changed\s+the\s+(?:location|position)\s+of)\s+(?:(?:the|a|an)\s+)?{_OBJECT}"),
     "move"),
)


def _object(attrs: str, head: str) -> ObjectRef | None:
    """The object the words name; None when they name an attribute twice ("small large cube")."""
    named: dict[str, str] = {}
    for word in attrs.split() + ([] if head in _GENERIC else [head]):
        attribute, value = _WORDS[word]
        if attribute in named:
            return None
        named[attribute] = value
    return ObjectRef(*(named.get(a) for a in ATTRIBUTES))


def parse_caption(caption: str) -> ParsedCaption | None:
    """The change a caption describes; None when the grammar cannot parse it: never a guess."""
    if says_no_change(caption):
        return ParsedCaption("none", None, None)
    text = plain_caption(caption)
    m = _SUBJECT_FORM.fullmatch(text)
    if m is not None:
        obj = _object(m["attrs"], m["head"])
        if obj is None:
            return None
        if m["event"] is not None:
            phrase = " ".join(m["event"].split())
            kind = "add" if phrase in _NEW_ONLY else _EVENT_KIND[phrase]
            # "new" belongs to an appearance; "a new cube moved" contradicts itself.
            if (m["new_adj"] is not None or phrase in _NEW_ONLY) and (kind != "add" or m["new_adj"] is None):
                return None
            return ParsedCaption(kind, obj, None)
        if m["new_adj"] is not None:
            return None
        kind, value = _WORDS[m["value"]]
        if kind not in _VALUE_VERBS[" ".join(m["verb"].split())]:
            return None
        return ParsedCaption(kind, obj, value)
    for form, kind in _PREFIX_FORMS:
        m = form.fullmatch(text)
        if m is not None:
            obj = _object(m["attrs"], m["head"])
            return None if obj is None else ParsedCaption(kind, obj, None)
    return None


def _agreed(values) -> str | None:
    named = {v for v in values if v is not None}
    return named.pop() if len(named) == 1 else None


def caption_truth(references: Sequence[str]) -> ParsedCaption | None:
    """What a pair's references agree on.

    The change type is the one most parsed references give (None when no reference parses or the
    top types tie); each attribute, and `new`, is the value that every parsed reference of that
    type naming it agrees on, None where none names it or they disagree.
    """
    parsed = [p for p in map(parse_caption, references) if p is not None]
    if not parsed:
        return None
    ranked = Counter(p.change_type for p in parsed).most_common()
    if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
        return None
    kind = ranked[0][0]
    if kind == "none":
        return ParsedCaption("none", None, None)
    agreeing = [p for p in parsed if p.change_type == kind]
    obj = ObjectRef(*(_agreed(getattr(p.obj, a) for p in agreeing) for a in ATTRIBUTES))
    return ParsedCaption(kind, obj, _agreed(p.new for p in agreeing))


def wrong_attributes(predicted: ParsedCaption, truth: ParsedCaption) -> tuple[str, ...]:
    """For a prediction of the right change type: the attributes (in ATTRIBUTES order, then "new")
    that both name and that differ. Empty = the right object, as far as the captions say."""
    if predicted.change_type != truth.change_type:
        raise ValueError(f"wrong_attributes compares captions of one change type, not "
                         f"{predicted.change_type!r} with {truth.change_type!r}")
    pairs = [] if truth.obj is None else [(a, getattr(predicted.obj, a), getattr(truth.obj, a)) for a in ATTRIBUTES]
    pairs.append(("new", predicted.new, truth.new))
    return tuple(name for name, p, t in pairs if p is not None and t is not None and p != t)
