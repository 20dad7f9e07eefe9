"""The caption grammar and the no-change detector behind the error analysis."""
from __future__ import annotations

import itertools
from collections import Counter

import pytest

from clip4idc.analysis.clevr_grammar import (
    ATTRIBUTES, CHANGE_KINDS, ObjectRef, ParsedCaption, caption_truth, parse_caption, wrong_attributes)
from clip4idc.analysis.no_change import says_no_change
from clip4idc.data.records import CHANGE_TYPES
from clip4idc.data.synthetic import (
    CHANGE_TEMPLATES, COLORS, MATERIALS, NO_CHANGE_CAPTIONS, SHAPES, SIZES, SYNONYMS, Obj, _caption_variants)

REAL_NO_CHANGE = (
    "no change was made", "there is no change", "the two scenes seem identical", "the scene is the same as before",
    "the scene remains the same", "nothing has changed", "nothing was modified", "no change has occurred",
    "there is no difference",
    "the scence is the same as before",   # the authors' typo, in the released captions
)
PARAPHRASES = (
    "there are no changes", "nothing changed", "the scenes are identical", "the two images look the same",
    "no difference", "the scene did not change", "it has not changed", "unchanged", "the scene is unchanged",
    "there are not any differences", "the images have not been modified", "everything stayed the same",
    "the before and after images are the same", "the two scenes look identical to each other",
    "nothing is different", "there is no visible change in the scene",
    # case, final period, extra spaces, PTB tokenisation
    "The scene didn't change.", "the scene did n't change .", "  Nothing   has changed . ", "NO CHANGE WAS MADE",
)


def _ref(size=None, color=None, material=None, shape=None) -> ObjectRef:
    return ObjectRef(size, color, material, shape)


def _synthetic_captions():
    """(caption, change type, object, new value) for every caption the synthetic generator can write."""
    for shape, size, material, color in itertools.product(SHAPES, SIZES, MATERIALS, COLORS):
        o = Obj(shape, size, color, material, 0.0, 0.0, 1.0)
        obj = ObjectRef(size, color, material, shape)
        for change_type, templates in CHANGE_TEMPLATES.items():
            news = {"color": [c for c in COLORS if c != color],
                    "material": [m for m in MATERIALS if m != material]}.get(change_type, [None])
            for template, new in itertools.product(templates, news):
                for caption in _caption_variants(change_type, template, o, new):
                    yield caption, change_type, obj, new


SYNTHETIC = list(_synthetic_captions())


def test_api_constants():
    assert CHANGE_KINDS == CHANGE_TYPES + ("none",)
    assert ATTRIBUTES == ("size", "color", "material", "shape")


def test_the_synthetic_captions_are_all_of_them():
    # Counted independently of _caption_variants, so that a generator that stops expanding a
    # synonym (and a check over fewer captions than the data can hold) is caught.
    def words(value):
        return len(SYNONYMS.get(value, (value,)))

    expected = Counter()
    for shape, size, material, _color in itertools.product(SHAPES, SIZES, MATERIALS, COLORS):
        phrases = words(size) * words(material) * words(shape)
        other_material = words(next(m for m in MATERIALS if m != material))
        for change_type, templates in CHANGE_TEMPLATES.items():
            per_template = {"color": phrases * (len(COLORS) - 1), "material": phrases * other_material}
            expected[change_type] += len(templates) * per_template.get(change_type, phrases)
    assert Counter(change_type for _, change_type, _, _ in SYNTHETIC) == expected
    assert {c for c, *_ in SYNTHETIC} >= {"someone removed the tiny red shiny block",
                                          "the big cyan matte ball was made metallic"}


def test_every_synthetic_caption_parses_to_its_change():
    wrong = [(caption, parsed) for caption, change_type, obj, new in SYNTHETIC
             if (parsed := parse_caption(caption)) != ParsedCaption(change_type, obj, new)]
    assert not wrong, wrong[:5]


def test_synthetic_captions_tolerate_case_period_spaces_and_ptb():
    for caption, change_type, obj, new in SYNTHETIC[::97]:
        expected = ParsedCaption(change_type, obj, new)
        for variant in (caption.upper() + ".", f"  {caption}  .", caption.replace(" ", "   "), caption + " ."):
            assert parse_caption(variant) == expected, variant


def test_no_change_captions_of_both_datasets():
    for caption in NO_CHANGE_CAPTIONS + REAL_NO_CHANGE:
        assert says_no_change(caption), caption
        assert parse_caption(caption) == ParsedCaption("none", None, None), caption


@pytest.mark.parametrize("caption", PARAPHRASES)
def test_no_change_paraphrases(caption):
    assert says_no_change(caption)
    assert parse_caption(caption) == ParsedCaption("none", None, None)


def test_no_change_is_silent_on_every_synthetic_change_caption():
    fired = [c for c, *_ in SYNTHETIC if says_no_change(c)]
    assert not fired, fired[:5]


# Captions in the real CLEVR-Change vocabulary: relations, "other", generic nouns, every synonym.
REAL = [
    # drop
    ("the large brown matte block that is on the right side of the large brown cylinder is gone",
     ParsedCaption("drop", _ref("large", "brown", "rubber", "cube"), None)),
    ("the brown shiny ball is no longer there", ParsedCaption("drop", _ref(None, "brown", "metal", "sphere"), None)),
    ("the big purple metal sphere to the left of the small gray cube has disappeared",
     ParsedCaption("drop", _ref("large", "purple", "metal", "sphere"), None)),
    ("the tiny cyan thing in front of the large blue matte cylinder is missing",
     ParsedCaption("drop", _ref("small", "cyan", None, None), None)),
    ("the red rubber object on the left side of the brown cube was removed",
     ParsedCaption("drop", _ref(None, "red", "rubber", None), None)),
    ("someone removed the large green metallic cylinder behind the small metallic sphere",
     ParsedCaption("drop", _ref("large", "green", "metal", "cylinder"), None)),
    # color
    ("the tiny yellow rubber cylinder that is behind the rubber block became brown",
     ParsedCaption("color", _ref("small", "yellow", "rubber", "cylinder"), "brown")),
    ("the matte cylinder became brown", ParsedCaption("color", _ref(None, None, "rubber", "cylinder"), "brown")),
    ("the small gray block which is left of the big red ball changed to green",
     ParsedCaption("color", _ref("small", "gray", None, "cube"), "green")),
    ("the big shiny cube turned purple", ParsedCaption("color", _ref("large", None, "metal", "cube"), "purple")),
    ("the other cyan sphere that is the same size as the tiny rubber cube is now yellow",
     ParsedCaption("color", _ref(None, "cyan", None, "sphere"), "yellow")),
    ("the large rubber thing changed its color to blue",
     ParsedCaption("color", _ref("large", None, "rubber", None), "blue")),
    # material
    ("the other large cylinder the same color as the large matte cylinder turned rubber",
     ParsedCaption("material", _ref("large", None, None, "cylinder"), "rubber")),
    ("the other big object the same shape as the tiny yellow rubber thing became shiny",
     ParsedCaption("material", _ref("large", None, None, None), "metal")),
    ("the other red sphere the same material as the tiny cyan object became matte",
     ParsedCaption("material", _ref(None, "red", None, "sphere"), "rubber")),
    ("the tiny blue ball that is in front of the big cylinder changed to metallic",
     ParsedCaption("material", _ref("small", "blue", None, "sphere"), "metal")),
    ("the gray block is now metal", ParsedCaption("material", _ref(None, "gray", None, "cube"), "metal")),
    ("the small green cylinder was made rubber",
     ParsedCaption("material", _ref("small", "green", None, "cylinder"), "rubber")),
    # add
    ("the tiny gray thing has been newly placed", ParsedCaption("add", _ref("small", "gray", None, None), None)),
    ("the tiny gray rubber ball that is right of the large matte ball has appeared",
     ParsedCaption("add", _ref("small", "gray", "rubber", "sphere"), None)),
    ("the object behind the green shiny cylinder and right of the large block in the after image has been added",
     ParsedCaption("add", _ref(), None)),
    ("the other gray object that is the same size as the cyan object has been newly placed",
     ParsedCaption("add", _ref(None, "gray", None, None), None)),
    ("a new big brown metal block appeared", ParsedCaption("add", _ref("large", "brown", "metal", "cube"), None)),
    ("there is a new small purple sphere to the right of the large gray cylinder",
     ParsedCaption("add", _ref("small", "purple", None, "sphere"), None)),
    ("someone added a tiny matte cube", ParsedCaption("add", _ref("small", None, "rubber", "cube"), None)),
    ("a new shiny ball is visible", ParsedCaption("add", _ref(None, None, "metal", "sphere"), None)),
    ("the yellow cylinder was added", ParsedCaption("add", _ref(None, "yellow", None, "cylinder"), None)),
    # move
    ("the small red shiny cube right of the tiny brown object changed its location",
     ParsedCaption("move", _ref("small", "red", "metal", "cube"), None)),
    ("the small red metallic block that is to the right of the tiny brown metal sphere is in a different location",
     ParsedCaption("move", _ref("small", "red", "metal", "cube"), None)),
    ("the other ball that is the same size as the blue object is in a different location",
     ParsedCaption("move", _ref(None, None, None, "sphere"), None)),
    ("the rubber small cylinder that is to the right of the small green object moved",
     ParsedCaption("move", _ref("small", None, "rubber", "cylinder"), None)),
    ("someone changed the location of the big yellow sphere",
     ParsedCaption("move", _ref("large", "yellow", None, "sphere"), None)),
    ("the blue thing that is behind the small metallic sphere has been moved",
     ParsedCaption("move", _ref(None, "blue", None, None), None)),
]


@pytest.mark.parametrize("caption, expected", REAL, ids=[c for c, _ in REAL])
def test_real_vocabulary_captions(caption, expected):
    assert parse_caption(caption) == expected
    assert parse_caption(caption.capitalize() + " .") == expected


def test_real_vocabulary_covers_every_kind_and_synonym():
    kinds = {e.change_type for _, e in REAL}
    assert kinds == set(CHANGE_TYPES)
    words = {w for c, _ in REAL for w in c.split()}
    for synonyms in (("ball", "sphere"), ("block", "cube"), ("metal", "metallic", "shiny"), ("rubber", "matte"),
                     ("tiny", "small"), ("big", "large"), ("other", "thing", "object")):
        assert set(synonyms) <= words, synonyms


def test_no_change_is_silent_on_real_change_captions():
    for caption, _ in REAL:
        assert not says_no_change(caption), caption
    for caption in ("the red cube is no longer there", "the other ball that is the same size as the blue cube is missing",
                    "the small cube changed to red", "the cylinder the same color as the large cube is the same"
                    " size as the sphere", "the big thing that is the same shape as the red ball moved"):
        assert not says_no_change(caption), caption


@pytest.mark.parametrize("caption", [
    "", "   ", ".",
    "the small cube changed to",                   # unfinished
    "the red changed to blue",                     # no head noun
    "the small cube changed to square",            # neither a colour nor a material
    "the small cube changed to large",             # a size is not a value a change can take
    "the small large cube moved",                  # one attribute named twice
    "the cube banana is missing",                  # a modifier must start with a relation
    "the cube that is behind moved",               # a relation without its object
    "the cube near the red sphere moved",          # not one of CLEVR's relations
    "the small cube changed its color to rubber",  # a colour verb with a material
    "the small cube was made red",                 # a material verb with a colour
    "a new red cube moved",                        # "new" with something other than an appearance
    "the red cube is visible",                     # visible without "new" says nothing changed
    "someone added",
    "moved",
    "the cube moved and the sphere turned red",    # two changes
    "the cube flew away",
    "a cat is sitting on the mat",
])
def test_unparseable(caption):
    assert parse_caption(caption) is None


def test_truth_when_references_agree():
    refs = ["the tiny red shiny cube changed its location", "the small red metal block moved",
            "someone moved the small red metallic cube"]
    assert caption_truth(refs) == ParsedCaption("move", _ref("small", "red", "metal", "cube"), None)


def test_truth_takes_the_majority_type_and_only_its_references():
    refs = ["the small red cube turned blue", "the small red cube became blue",
            "the big green ball moved",                 # a minority type: its attributes do not count
            "the small cube changed to blue", "gibberish here"]
    assert caption_truth(refs) == ParsedCaption("color", _ref("small", "red", None, "cube"), "blue")


def test_truth_of_no_change_references():
    assert caption_truth(["there is no change", "nothing has changed", "the cube moved"]) == \
        ParsedCaption("none", None, None)


def test_truth_tie_or_nothing_parsed_is_none():
    assert caption_truth(["the red cube moved", "the red cube is missing"]) is None
    assert caption_truth(["the red cube moved", "the red cube is missing", "nothing changed"]) is None
    assert caption_truth(["what a pretty picture", ""]) is None
    assert caption_truth([]) is None


def test_truth_leaves_disagreeing_or_unnamed_attributes_none():
    refs = ["the small red thing became metal", "the tiny blue rubber cube changed to shiny",
            "the red object that is behind the gray ball turned metallic"]
    # size: the two that name it say small; color: red vs blue; material and shape: only one names
    # each, and no one disagrees; new: all say metal, in three words.
    assert caption_truth(refs) == ParsedCaption("material", _ref("small", None, "rubber", "cube"), "metal")
    assert caption_truth(["the cube moved", "the sphere moved"]) == ParsedCaption("move", _ref(), None)
    refs = ["the small gray cube turned red", "the small gray cube turned blue"]
    assert caption_truth(refs) == ParsedCaption("color", _ref("small", "gray", None, "cube"), None)


def test_wrong_attributes():
    truth = ParsedCaption("color", _ref("small", "red", "metal", "cube"), "blue")
    same = ParsedCaption("color", _ref("small", "red", "metal", "cube"), "blue")
    assert wrong_attributes(same, truth) == ()
    assert wrong_attributes(ParsedCaption("color", _ref("large", "red", "metal", "cube"), "blue"), truth) == ("size",)
    several = ParsedCaption("color", _ref("large", "red", "rubber", "sphere"), "green")
    assert wrong_attributes(several, truth) == ("size", "material", "shape", "new")
    # an attribute the prediction leaves out is not wrong, nor one the truth leaves out
    assert wrong_attributes(ParsedCaption("color", _ref(None, "red", None, None), "blue"), truth) == ()
    partial_truth = ParsedCaption("color", _ref(None, None, "metal", "cube"), None)
    assert wrong_attributes(ParsedCaption("color", _ref("large", "gray", "metal", "cube"), "blue"), partial_truth) == ()
    assert wrong_attributes(ParsedCaption("color", _ref("small", "red", "metal", "cube"), "green"), truth) == ("new",)
    drop = ParsedCaption("drop", _ref("small", "red", None, "sphere"), None)
    assert wrong_attributes(ParsedCaption("drop", _ref("small", "blue", "rubber", "cube"), None), drop) == \
        ("color", "shape")
    none = ParsedCaption("none", None, None)
    assert wrong_attributes(none, none) == ()


def test_wrong_attributes_on_parsed_captions():
    # the modifier's object (the rubber block) must not be taken for the named one
    truth = caption_truth(["the tiny yellow rubber cylinder that is behind the rubber block became brown"])
    predicted = parse_caption("the small yellow matte cylinder that is to the left of the big cube turned brown")
    assert wrong_attributes(predicted, truth) == ()
    predicted = parse_caption("the rubber block behind the tiny yellow cylinder became brown")
    assert wrong_attributes(predicted, truth) == ("shape",)


def test_wrong_attributes_refuses_different_change_types():
    with pytest.raises(ValueError):
        wrong_attributes(ParsedCaption("move", _ref(), None), ParsedCaption("drop", _ref(), None))


def test_records_are_validated():
    with pytest.raises(ValueError):
        ObjectRef("tiny", None, None, None)          # synonyms are not canonical values
    with pytest.raises(ValueError):
        ParsedCaption("recolor", _ref(), None)
    with pytest.raises(ValueError):
        ParsedCaption("none", _ref(), None)
    with pytest.raises(ValueError):
        ParsedCaption("move", None, None)
    with pytest.raises(ValueError):
        ParsedCaption("color", _ref(), "metal")


def test_analysis_does_not_import_torch():
    # The analysis runs on decoded captions alone; pulling in torch would tie it to the model stack.
    import os
    import subprocess
    import sys
    from pathlib import Path

    import clip4idc
    # The child imports the same clip4idc as this process, not whichever the interpreter would find.
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(Path(clip4idc.__file__).parents[1])] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    code = ("import sys, clip4idc.analysis.clevr_grammar, clip4idc.analysis.no_change; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    assert out.strip() == "False"
