"""The embedded dataset: small CLEVR-like scenes written in CLEVR-Change's exact on-disk format.

Offline there is no CLEVR-Change, so this module renders a stand-in with PIL/numpy and writes
it exactly as the real dataset is laid out (PAPER.md §7); the real CLEVR-Change reader reads
it, so demo data has no code path of its own (ARCHITECTURE.md, property 3). Per scene:
- `images/CLEVR_default_%06d.png`: the before image;
- `sc_images/CLEVR_semantic_%06d.png`: the after image with one semantic change
  (color, material, add, drop or move);
- `nsc_images/CLEVR_nonsemantic_%06d.png`: the distractor, the before scene seen from a slightly
  shifted viewpoint and/or under other lighting, with no semantic change.
Plus `change_captions.json`, `no_change_captions.json`, `splits.json`, `type_mapping.json` and
one file the real dataset lacks, `scene_descriptions.json` (what each image shows), used to
pretrain a tiny CLIP on single images, standing in for OpenAI's weights.

Every scene draws from its own generator seeded by (seed, scene number), so the output is
byte-identical for a seed whatever the number of workers.
"""
from __future__ import annotations

import itertools
import json
import math
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from ..io import atomic_path
from .records import CHANGE_TYPES, SPLITS

# CLEVR's eight colours, with the RGB values of CLEVR's properties.json.
COLORS: dict[str, tuple[int, int, int]] = {
    "gray": (87, 87, 87), "red": (173, 35, 35), "blue": (42, 75, 215), "green": (29, 105, 20),
    "brown": (129, 74, 25), "purple": (129, 38, 192), "cyan": (41, 208, 208), "yellow": (255, 238, 51),
}
SHAPES = ("cube", "sphere", "cylinder")
SIZES = ("small", "large")
MATERIALS = ("rubber", "metal")
# The words CLEVR's templates use for each attribute value.
SYNONYMS: dict[str, tuple[str, ...]] = {
    "small": ("small", "tiny"), "large": ("large", "big"),
    "metal": ("metal", "metallic", "shiny"), "rubber": ("rubber", "matte"),
    "cube": ("cube", "block"), "sphere": ("sphere", "ball"), "cylinder": ("cylinder",),
}
# Object radius as a fraction of the image width: at 120x80 small is ~8 px and large ~14 px,
# still a few pixels after the model's resize to 64x64, and clearly different.
RADIUS = {"small": 0.07, "large": 0.115}

# Captions in CLEVR-Change's style: lower case, no final period. {obj} is the object phrase
# without its article, {new} the new colour / material word.
CHANGE_TEMPLATES: dict[str, tuple[str, ...]] = {
    "color": ("the {obj} changed to {new}", "the {obj} became {new}", "the {obj} turned {new}",
              "the {obj} is now {new}", "the {obj} changed its color to {new}"),
    "material": ("the {obj} became {new}", "the {obj} changed to {new}", "the {obj} turned {new}",
                 "the {obj} is now {new}", "the {obj} was made {new}"),
    "add": ("a {obj} has been newly placed", "someone added a {obj}", "a {obj} has been added",
            "a new {obj} appeared", "there is a new {obj}"),
    "drop": ("the {obj} has disappeared", "the {obj} is missing", "the {obj} was removed",
             "someone removed the {obj}", "the {obj} is no longer there"),
    "move": ("the {obj} changed its location", "the {obj} moved", "the {obj} has been moved",
             "someone moved the {obj}", "the {obj} is in a different location"),
}
NO_CHANGE_CAPTIONS = (
    "no change was made", "there is no change", "the scene remains the same", "nothing has changed",
    "the two scenes seem identical", "no change has occurred", "there is no difference",
    "the scene is the same as before", "nothing was modified", "the scene did not change",
)

_SUPERSAMPLE = 3          # shapes are drawn with hard edges at 3x, then box-averaged: anti-aliasing
_SCENE_ATTEMPTS = 200     # fresh layouts tried before a configuration is declared too crowded
_PLACE_ATTEMPTS = 100     # positions tried per object
_MIN_GAP = 0.9            # centres at least 0.9 x (r1 + r2) apart: objects may touch, hardly overlap
_CHUNK = 16               # scenes per worker task

# Light from the upper left and in front; H is the Blinn half-vector for the viewer at +z.
_LIGHT = np.array([-0.45, -0.6, 0.66]) / np.linalg.norm([-0.45, -0.6, 0.66])
_HALF = (_LIGHT + [0, 0, 1]) / np.linalg.norm(_LIGHT + [0, 0, 1])


@dataclass(frozen=True)
class Obj:
    shape: str
    size: str
    color: str
    material: str
    x: float   # centre, image pixels
    y: float
    r: float   # radius, image pixels

    @property
    def attributes(self) -> tuple[str, str, str, str]:
        return (self.size, self.color, self.material, self.shape)


@dataclass(frozen=True)
class Config:
    width: int
    height: int
    min_objects: int
    max_objects: int
    n_change_captions: int
    n_no_change_captions: int


# ---------------------------------------------------------------------------------------------
# Rendering


@lru_cache(maxsize=4)
def _floor(width: int, height: int) -> np.ndarray:
    """A plain gray floor, darker far away (top) and slightly darker at the sides."""
    ys = np.linspace(0.0, 1.0, height * _SUPERSAMPLE)[:, None]
    xs = np.linspace(-1.0, 1.0, width * _SUPERSAMPLE)[None, :]
    value = 0.52 + 0.12 * ys - 0.03 * xs ** 2
    floor = (np.repeat(value[:, :, None], 3, axis=2) * np.array([1.0, 1.0, 1.02])).astype(np.float32)
    floor.setflags(write=False)
    return floor


def _window(canvas: np.ndarray, cx: float, cy: float, half_w: float, half_h: float):
    """The canvas region around (cx, cy) and its pixel-centre coordinates in image pixels."""
    hh, ww = canvas.shape[:2]
    s = _SUPERSAMPLE
    x0, x1 = max(int((cx - half_w) * s), 0), min(int(math.ceil((cx + half_w) * s)), ww)
    y0, y1 = max(int((cy - half_h) * s), 0), min(int(math.ceil((cy + half_h) * s)), hh)
    if x0 >= x1 or y0 >= y1:
        return None
    xs = (np.arange(x0, x1) + 0.5) / s
    ys = (np.arange(y0, y1) + 0.5) / s
    return canvas[y0:y1, x0:x1], xs[None, :], ys[:, None]


def _shadow(canvas: np.ndarray, o: Obj) -> None:
    # A soft contact shadow, lower right (light from the upper left): objects sit on the floor.
    cx, cy = o.x + 0.3 * o.r, o.y + 0.75 * o.r
    win = _window(canvas, cx, cy, 1.1 * o.r, 0.5 * o.r)
    if win is None:
        return
    region, xs, ys = win
    d = np.sqrt(((xs - cx) / (1.05 * o.r)) ** 2 + ((ys - cy) / (0.42 * o.r)) ** 2)
    region *= (1.0 - 0.3 * np.clip(1.0 - d, 0.0, 1.0) ** 0.5)[:, :, None]


def _paint(region: np.ndarray, mask: np.ndarray, color: np.ndarray, shade, spec=0.0) -> None:
    """Set the masked pixels to colour x shade, blended towards white by the specular term."""
    if not mask.any():
        return
    shade = np.broadcast_to(shade, mask.shape)[mask][:, None]
    spec = np.broadcast_to(spec, mask.shape)[mask][:, None]
    lit = np.clip(color * shade, 0.0, 1.0)
    region[mask] = lit + spec * (1.0 - lit)


def _sphere(region, X, Y, color, metal):
    d2 = X ** 2 + Y ** 2
    mask = d2 <= 1.0
    nz = np.sqrt(np.clip(1.0 - d2, 0.0, 1.0))
    ndl = np.clip(X * _LIGHT[0] + Y * _LIGHT[1] + nz * _LIGHT[2], 0.0, 1.0)
    if metal:  # contrasty shading and a sharp white highlight: reads as shiny even at 64 px
        ndh = np.clip(X * _HALF[0] + Y * _HALF[1] + nz * _HALF[2], 0.0, 1.0)
        _paint(region, mask, color, 0.15 + 0.95 * ndl ** 2, 0.95 * ndh ** 40 + 0.15 * ndh ** 6)
    else:      # matte: soft shading only, no highlight
        _paint(region, mask, color, 0.55 + 0.5 * ndl)


def _cylinder(region, X, Y, color, metal):
    rw, top, bottom, ry = 0.85, -0.5, 0.6, 0.26
    top_mask = (X / rw) ** 2 + ((Y - top) / ry) ** 2 <= 1.0
    body = (np.abs(X) <= rw) & (Y >= top) & ((Y <= bottom) | ((X / rw) ** 2 + ((Y - bottom) / ry) ** 2 <= 1.0))
    body &= ~top_mask
    nx = np.clip(X / rw, -1.0, 1.0)
    nz = np.sqrt(1.0 - nx ** 2)
    ndl = np.clip(nx * _LIGHT[0] + nz * _LIGHT[2] + 0.3, 0.0, 1.0)  # +0.3: light also comes from above
    if metal:
        ndh = np.clip(nx * _HALF[0] + nz * _HALF[2], 0.0, 1.0)
        _paint(region, body, color, 0.15 + 0.9 * ndl ** 2, 0.9 * ndh ** 30)
        _paint(region, top_mask, color, 1.05 - 0.4 * (X + 1.0) / 2, 0.35 * np.clip(-X, 0.0, 1.0))
    else:
        _paint(region, body, color, 0.5 + 0.45 * ndl)
        _paint(region, top_mask, color, 1.0, 0.12)


def _cube(region, X, Y, color, metal):
    # An oblique box: a square front face, a parallelogram top and right side.
    left, right, up, down, depth_x, depth_y = -0.95, 0.5, -0.65, 0.8, 0.45, 0.315
    front = (X >= left) & (X <= right) & (Y >= up) & (Y <= down)
    t = (up - Y) / depth_y                                  # 0 at the front top edge, 1 at the back
    top = (t >= 0) & (t <= 1) & (X >= left + depth_x * t) & (X <= right + depth_x * t)
    s = (X - right) / depth_x                               # 0 at the front right edge, 1 at the back
    side = (s > 0) & (s <= 1) & (Y >= up - depth_y * s) & (Y <= down - depth_y * s)
    if metal:  # gradients and a diagonal glint instead of flat faces
        u = (X - left) / (right - left)
        v = (Y - up) / (down - up)
        glint = 0.8 * np.exp(-(((u - v) + 0.15) / 0.12) ** 2)
        _paint(region, front, color, 1.0 - 0.55 * (u + v) / 2, glint)
        _paint(region, top, color, 1.1, 0.25 + 0.3 * np.clip(1 - t, 0, 1))
        _paint(region, side, color, 0.45 - 0.2 * np.clip(s, 0, 1))
    else:
        _paint(region, front, color, 0.82)
        _paint(region, top, color, 1.05, 0.1)
        _paint(region, side, color, 0.58)


_SHAPE_PAINTERS = {"sphere": _sphere, "cylinder": _cylinder, "cube": _cube}


def _draw(canvas: np.ndarray, o: Obj) -> None:
    win = _window(canvas, o.x, o.y, 1.05 * o.r, 1.05 * o.r)
    if win is None:
        return
    region, xs, ys = win
    color = np.asarray(COLORS[o.color], dtype=np.float64) / 255.0
    _SHAPE_PAINTERS[o.shape](region, (xs - o.x) / o.r, (ys - o.y) / o.r, color, o.material == "metal")


def render(objects: list[Obj], width: int, height: int, *, brightness: float = 1.0,
           contrast: float = 1.0) -> np.ndarray:
    """An RGB uint8 image [height, width, 3] of the objects on the floor."""
    canvas = _floor(width, height).copy()
    for o in objects:
        _shadow(canvas, o)
    # Far (higher up) objects first, so nearer ones occlude them.
    for o in sorted(objects, key=lambda o: (o.y, o.x)):
        _draw(canvas, o)
    # Box-average each supersample block; strided adds are far faster than a 5-d mean.
    s = _SUPERSAMPLE
    rows = sum(canvas[i::s] for i in range(s))
    image = sum(rows[:, i::s] for i in range(s)) / (s * s)
    if contrast != 1.0 or brightness != 1.0:
        image = ((image - 0.5) * contrast + 0.5) * brightness
    return np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# Scenes and changes


class _Retry(Exception):
    """This layout cannot take the change; draw another one."""


def _radius(size: str, cfg: Config) -> float:
    return RADIUS[size] * cfg.width


def _random_attributes(rng: np.random.Generator) -> tuple[str, str, str, str]:
    return (SIZES[rng.integers(len(SIZES))], list(COLORS)[rng.integers(len(COLORS))],
            MATERIALS[rng.integers(len(MATERIALS))], SHAPES[rng.integers(len(SHAPES))])


def _free_position(rng, r: float, others: list[Obj], cfg: Config, away_from: tuple[float, float, float] | None = None):
    """A position whose object overlaps no other much (and, for a move, lies clearly elsewhere)."""
    margin = r + 1.0
    if cfg.width - 2 * margin <= 0 or cfg.height - 2 * margin <= 0:
        return None
    for _ in range(_PLACE_ATTEMPTS):
        x = rng.uniform(margin, cfg.width - margin)
        y = rng.uniform(margin, cfg.height - margin)
        if any(math.hypot(x - o.x, y - o.y) < _MIN_GAP * (r + o.r) for o in others):
            continue
        if away_from is not None and math.hypot(x - away_from[0], y - away_from[1]) < away_from[2]:
            continue
        return x, y
    return None


def _new_object(rng, others: list[Obj], cfg: Config) -> Obj:
    taken = {o.attributes for o in others}
    for _ in range(_PLACE_ATTEMPTS):
        size, color, material, shape = _random_attributes(rng)
        # Every object of a scene is unique, so "the small red metal cube" names one object.
        if (size, color, material, shape) not in taken:
            break
    else:
        raise _Retry
    r = _radius(size, cfg)
    pos = _free_position(rng, r, others, cfg)
    if pos is None:
        raise _Retry
    return Obj(shape, size, color, material, pos[0], pos[1], r)


def _change_color(rng, before: list[Obj], cfg: Config):
    for i in rng.permutation(len(before)):
        o = before[i]
        taken = {p.attributes for j, p in enumerate(before) if j != i}
        options = [c for c in COLORS if c != o.color and (o.size, c, o.material, o.shape) not in taken]
        if options:
            new = options[rng.integers(len(options))]
            after = list(before)
            after[i] = replace(o, color=new)
            return after, o, new
    raise _Retry


def _change_material(rng, before: list[Obj], cfg: Config):
    for i in rng.permutation(len(before)):
        o = before[i]
        new = "metal" if o.material == "rubber" else "rubber"
        if (o.size, o.color, new, o.shape) not in {p.attributes for j, p in enumerate(before) if j != i}:
            after = list(before)
            after[i] = replace(o, material=new)
            return after, o, new
    raise _Retry


def _add(rng, before: list[Obj], cfg: Config):
    o = _new_object(rng, before, cfg)
    return before + [o], o, None


def _drop(rng, before: list[Obj], cfg: Config):
    i = int(rng.integers(len(before)))
    return before[:i] + before[i + 1:], before[i], None


def _move(rng, before: list[Obj], cfg: Config):
    for i in rng.permutation(len(before)):
        o = before[i]
        others = before[:i] + before[i + 1:]
        # At least a diameter plus 5 % of the width away: the old and new places do not overlap.
        pos = _free_position(rng, o.r, others, cfg, away_from=(o.x, o.y, 2 * o.r + 0.05 * cfg.width))
        if pos is not None:
            after = list(before)
            after[i] = replace(o, x=pos[0], y=pos[1])
            return after, o, None
    raise _Retry


_CHANGES = {"color": _change_color, "material": _change_material, "add": _add, "drop": _drop, "move": _move}


def _object_count(rng, change_type: str, cfg: Config) -> int:
    # Keep both images of the pair within min..max objects where the range allows it.
    lo, hi = cfg.min_objects, cfg.max_objects
    if change_type == "add" and hi > lo:
        hi -= 1
    if change_type == "drop" and hi > lo:
        lo += 1
    return int(rng.integers(lo, hi + 1))


def _distractor(rng, objects: list[Obj], cfg: Config) -> tuple[list[Obj], float, float]:
    """The before scene under a small viewpoint shift and/or a lighting change; nothing else."""
    kind = ("viewpoint", "lighting", "both")[rng.integers(3)]
    brightness = contrast = 1.0
    moved = objects
    if kind in ("viewpoint", "both"):
        # Shift by 1-3 % of the width and zoom by up to 4 % about the centre, as a camera jitter.
        angle = rng.uniform(0, 2 * math.pi)
        shift = rng.uniform(0.01, 0.03) * cfg.width
        dx, dy = shift * math.cos(angle), shift * math.sin(angle)
        zoom = rng.uniform(0.96, 1.04)
        cx, cy = cfg.width / 2, cfg.height / 2
        moved = [replace(o, x=cx + (o.x - cx) * zoom + dx, y=cy + (o.y - cy) * zoom + dy, r=o.r * zoom)
                 for o in objects]
    if kind in ("lighting", "both"):
        brightness = 1.0 + rng.choice([-1, 1]) * rng.uniform(0.03, 0.10)
        contrast = 1.0 + rng.choice([-1, 1]) * rng.uniform(0.03, 0.08)
    return moved, float(brightness), float(contrast)


# ---------------------------------------------------------------------------------------------
# Language


def _phrase_variants(o: Obj) -> list[str]:
    """Every way CLEVR's synonyms can name the object: "tiny red shiny block", ..."""
    return [" ".join(words) for words in itertools.product(
        SYNONYMS[o.size], (o.color,), SYNONYMS[o.material], SYNONYMS[o.shape])]


def _caption_variants(change_type: str, template: str, o: Obj, new: str | None) -> list[str]:
    news = SYNONYMS[new] if change_type == "material" else (new,)
    return list(dict.fromkeys(template.format(obj=p, new=n) for p in _phrase_variants(o) for n in news))


def _change_captions(rng, change_type: str, o: Obj, new: str | None, n: int) -> list[str]:
    """n distinct captions: templates without replacement (cycling when n exceeds them), random synonyms."""
    templates = CHANGE_TEMPLATES[change_type]
    pools = [_caption_variants(change_type, templates[i], o, new) for i in rng.permutation(len(templates))]
    captions: list[str] = []
    for i in itertools.count():
        pool = [c for c in pools[i % len(pools)] if c not in captions]
        if pool:
            captions.append(pool[rng.integers(len(pool))])
        if len(captions) == n:
            return captions
        if i > n * len(pools):  # unreachable: synthesize() checks n against the capacity
            raise ValueError(f"cannot write {n} distinct {change_type} captions")


def caption_capacity(change_type: str) -> int:
    """The fewest distinct captions a change of this type can have (the least synonym-rich object)."""
    counts = []
    for shape, size, material, color in itertools.product(SHAPES, SIZES, MATERIALS, ("red",)):
        o = Obj(shape, size, color, material, 0.0, 0.0, 1.0)
        new = {"color": "blue", "material": "metal" if material == "rubber" else "rubber"}.get(change_type)
        counts.append(sum(len(_caption_variants(change_type, t, o, new)) for t in CHANGE_TEMPLATES[change_type]))
    return min(counts)


def describe(objects: list[Obj], rng: np.random.Generator) -> str:
    """What an image shows, left to right: "a small red metal cube, a big cyan matte ball and ..."."""
    phrases = []
    for o in sorted(objects, key=lambda o: o.x):
        words = [SYNONYMS[o.size], (o.color,), SYNONYMS[o.material], SYNONYMS[o.shape]]
        phrases.append("a " + " ".join(w[rng.integers(len(w))] for w in words))
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]


# ---------------------------------------------------------------------------------------------
# One scene, and the whole dataset


def make_scene(seed: int, scene: int, change_type: str, cfg: Config) -> dict:
    """The before / change / distractor object lists, lighting and text of one scene (no pixels)."""
    rng = np.random.default_rng([seed, scene])
    for _ in range(_SCENE_ATTEMPTS):
        before: list[Obj] = []
        try:
            for _ in range(_object_count(rng, change_type, cfg)):
                before.append(_new_object(rng, before, cfg))
            after, changed, new = _CHANGES[change_type](rng, before, cfg)
        except _Retry:
            continue
        distractor, brightness, contrast = _distractor(rng, before, cfg)
        return {
            "before": before, "after": after, "distractor": distractor,
            "brightness": brightness, "contrast": contrast,
            "change_captions": _change_captions(rng, change_type, changed, new, cfg.n_change_captions),
            "no_change_captions": [NO_CHANGE_CAPTIONS[i] for i in
                                   rng.choice(len(NO_CHANGE_CAPTIONS), cfg.n_no_change_captions, replace=False)],
            "descriptions": [describe(before, rng), describe(after, rng), describe(before, rng)],
        }
    raise ValueError(f"could not lay out a scene of up to {cfg.max_objects} objects (+1 for 'add') in "
                     f"{cfg.width}x{cfg.height} pixels after {_SCENE_ATTEMPTS} attempts; "
                     f"lower max_objects or enlarge width/height")


def image_paths(scene: int) -> tuple[str, str, str]:
    """Before, semantic-change and distractor image paths of a scene, relative to the root."""
    return (f"images/CLEVR_default_{scene:06d}.png", f"sc_images/CLEVR_semantic_{scene:06d}.png",
            f"nsc_images/CLEVR_nonsemantic_{scene:06d}.png")


def _write_png(path: Path, pixels: np.ndarray) -> None:
    # Level 3: half the encoding time of the default 6 for ~15 % larger files.
    Image.fromarray(pixels).save(path, format="PNG", compress_level=3)


def _render_scenes(root: str, seed: int, tasks: list[tuple[int, str]], cfg: Config) -> list[dict]:
    """Render and write a chunk of scenes; return their text (captions, descriptions)."""
    out = []
    for scene, change_type in tasks:
        s = make_scene(seed, scene, change_type, cfg)
        paths = image_paths(scene)
        _write_png(Path(root, paths[0]), render(s["before"], cfg.width, cfg.height))
        _write_png(Path(root, paths[1]), render(s["after"], cfg.width, cfg.height))
        _write_png(Path(root, paths[2]), render(s["distractor"], cfg.width, cfg.height,
                                                brightness=s["brightness"], contrast=s["contrast"]))
        out.append({"scene": scene, "change_type": change_type, "change_captions": s["change_captions"],
                    "no_change_captions": s["no_change_captions"],
                    "descriptions": dict(zip(paths, s["descriptions"]))})
    return out


def _balanced_types(seed: int, split_index: int, n: int) -> list[str]:
    # Each split gets the five change types in (near) equal numbers, in a seeded random order.
    types = [CHANGE_TYPES[i % len(CHANGE_TYPES)] for i in range(n)]
    np.random.default_rng([seed, 1_000_003, split_index]).shuffle(types)
    return types


def _validate(seed, counts, width, height, min_objects, max_objects, n_change, n_no_change, workers) -> None:
    for name, value in counts.items():
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"synthesize: {name} must be an integer >= 1, got {value!r}")
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"synthesize: seed must be an integer >= 0, got {seed!r}")
    if width < 16 or height < 16:
        raise ValueError(f"synthesize: width and height must be >= 16 pixels, got {width}x{height}")
    if height < 2 * (RADIUS["large"] * width + 1):
        raise ValueError(f"synthesize: a large object ({RADIUS['large'] * width:.1f} px radius at width {width}) "
                         f"does not fit in height {height}; use an aspect closer to 3:2")
    if min_objects < 2:
        raise ValueError(f"synthesize: min_objects must be >= 2 (a drop must leave a scene), got {min_objects}")
    if max_objects < min_objects:
        raise ValueError(f"synthesize: max_objects ({max_objects}) must be >= min_objects ({min_objects})")
    capacity = min(caption_capacity(t) for t in CHANGE_TYPES)
    if not 1 <= n_change <= capacity:
        raise ValueError(f"synthesize: n_change_captions must be in 1..{capacity} (distinct captions), got {n_change}")
    if not 1 <= n_no_change <= len(NO_CHANGE_CAPTIONS):
        raise ValueError(f"synthesize: n_no_change_captions must be in 1..{len(NO_CHANGE_CAPTIONS)}, "
                         f"got {n_no_change}")
    if workers < 1:
        raise ValueError(f"synthesize: workers must be >= 1, got {workers}")


def synthesize(out_dir: str | Path, *, seed: int, n_train: int, n_val: int, n_test: int, width: int,
               height: int, min_objects: int, max_objects: int, n_change_captions: int,
               n_no_change_captions: int, workers: int = 1, progress: bool = True) -> None:
    """Write the embedded dataset to `out_dir` in CLEVR-Change's layout; all of it or nothing."""
    counts = {"n_train": n_train, "n_val": n_val, "n_test": n_test}
    _validate(seed, counts, width, height, min_objects, max_objects, n_change_captions,
              n_no_change_captions, workers)
    cfg = Config(width, height, min_objects, max_objects, n_change_captions, n_no_change_captions)

    # Scenes are numbered 0..N-1, train first, then val, then test.
    splits, tasks, start = {}, [], 0
    for k, (split, n) in enumerate(zip(SPLITS, (n_train, n_val, n_test))):
        splits[split] = list(range(start, start + n))
        tasks += list(zip(splits[split], _balanced_types(seed, k, n)))
        start += n
    chunks = [tasks[i:i + _CHUNK] for i in range(0, len(tasks), _CHUNK)]

    with atomic_path(out_dir) as tmp:
        for sub in ("images", "sc_images", "nsc_images"):
            (tmp / sub).mkdir(parents=True)
        results: list[dict] = []
        bar = tqdm(total=len(tasks), desc="synthesize", unit="scene", disable=not progress)
        if workers == 1:
            for chunk in chunks:
                results += _render_scenes(str(tmp), seed, chunk, cfg)
                bar.update(len(chunk))
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                futures = {pool.submit(_render_scenes, str(tmp), seed, chunk, cfg): len(chunk) for chunk in chunks}
                try:
                    for future in as_completed(futures):
                        results += future.result()
                        bar.update(futures[future])
                except BaseException:
                    # Stop queued work before the temporary directory is removed under the workers.
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise
        bar.close()
        _write_text_files(tmp, sorted(results, key=lambda r: r["scene"]), splits)


def _write_text_files(root: Path, results: list[dict], splits: dict[str, list[int]]) -> None:
    change, no_change, descriptions = {}, {}, {}
    type_mapping: dict[str, list[str]] = {t: [] for t in CHANGE_TYPES}
    for r in results:
        key = f"CLEVR_default_{r['scene']:06d}.png"
        change[key] = r["change_captions"]
        no_change[key] = r["no_change_captions"]
        type_mapping[r["change_type"]].append(f"{r['scene']:06d}.png")
        descriptions.update(r["descriptions"])
    for name, obj in (("change_captions.json", change), ("no_change_captions.json", no_change),
                      ("splits.json", splits), ("type_mapping.json", type_mapping),
                      ("scene_descriptions.json", descriptions)):
        (root / name).write_text(json.dumps(obj, indent=1) + "\n", encoding="utf-8")
