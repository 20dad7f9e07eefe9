"""Load and validate params.yaml: the only place values live.

One section per stage, so DVC's `params:` tracking and Snakemake's rerun triggers see
exactly what a stage depends on. Every section is a strict pydantic model: an unknown or
mistyped key is an error that names the key and the file.

Profiles: the top-level sections hold the embedded default. `profiles.<name>` holds
per-section overrides; `profile: <name>` (or `--profile`) applies them. Both Snakemake
(`--config profile=...`) and DVC (`-S profile=...`) reach the same switch.
"""
from __future__ import annotations

import copy
import difflib
import importlib.util
import json
import re
import sys
import types
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

VARIANTS = ("clip-ft", "no-adapt", "adapt")


def captioner_files(root: str | Path, seeds, released: bool = False) -> dict[str, Path]:
    """One file per captioner of a run, as decode, evaluate and analyze name theirs in a dataset's folder `root`:
    {"<variant>/seed<seed>": <variant>/seed<seed>.json for every variant and seed, "constant": constant.json and
    (`released`) "released": released.json}."""
    root = Path(root)
    files = {f"{v}/seed{s}": root / v / f"seed{s}.json" for v in VARIANTS for s in seeds}
    files["constant"] = root / "constant.json"
    if released:
        files["released"] = root / "released.json"
    return files


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _lists_to_tuples(cls, data: Any) -> Any:
        # YAML has no tuples, and strict mode refuses a list for a tuple field.
        if isinstance(data, dict):
            data = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return data


class SynthesizeParams(Section):
    seed: int = 0
    n_train: int = Field(ge=1)
    n_val: int = Field(ge=1)
    n_test: int = Field(ge=1)
    width: int = Field(ge=16)
    height: int = Field(ge=16)
    min_objects: int = Field(ge=2)
    max_objects: int = Field(ge=2)
    change_captions: int = Field(ge=1)
    no_change_captions: int = Field(ge=1)
    workers: int = Field(ge=1)


class SourceFile(Section):
    """One file of a dataset's official distribution (PAPER.md section 7), and where it goes.

    Exactly one origin: `url` (HTTP/HTTPS), `gdrive` (a Google Drive file id) or `gdrive_folder`
    (a Google Drive folder id: every file in it). `mirrors` are tried in order when the origin fails.
    """
    name: str                                # file (or folder) name under the dataset's downloads folder
    url: str | None = None
    gdrive: str | None = None
    gdrive_folder: str | None = None
    folder_file: str | None = None           # with gdrive_folder: only this file of the folder (found by listing
                                             # it), kept as the single file `name`
    archive_org: str | None = None           # mirror: an archive.org item id; its original files are fetched
    mirrors: tuple[str, ...] = ()            # mirror URLs of a single file, tried in order
    sha256: str | None = None                # pinned hash; null: computed and reported on first download
    unpack: str | None = None                # archives: unpack into this folder of the dataset root ("." = the
                                             # root); null: place the file itself at `name` in the dataset root
    strip: int = Field(default=0, ge=0)      # leading path components dropped from archive members

    @model_validator(mode="after")
    def _one_origin(self) -> "SourceFile":
        origins = [k for k in ("url", "gdrive", "gdrive_folder") if getattr(self, k)]
        if len(origins) != 1:
            raise ValueError(f"file {self.name!r}: give exactly one of url, gdrive, gdrive_folder (got {origins})")
        if self.sha256 is not None and not re.fullmatch(r"[0-9a-f]{64}", self.sha256):
            raise ValueError(f"file {self.name!r}: sha256 must be 64 lower-case hex digits, got {self.sha256!r}")
        if self.folder_file is not None and not self.gdrive_folder:
            raise ValueError(f"file {self.name!r}: folder_file names a file of a gdrive_folder; give the folder")
        if self.is_folder and (self.sha256 or self.mirrors):
            raise ValueError(f"file {self.name!r}: a gdrive_folder has no single sha256 or mirror URLs "
                             "(use archive_org for its mirror)")
        if self.archive_org and not self.is_folder:
            raise ValueError(f"file {self.name!r}: archive_org mirrors a whole gdrive_folder")
        for name in (self.name, self.unpack or "."):
            if name.startswith("/") or ".." in Path(name).parts:
                raise ValueError(f"file {self.name!r}: {name!r} must be a relative path inside the dataset")
        return self

    @property
    def is_folder(self) -> bool:
        """A whole Drive folder (kept as a folder `name`), not a single file."""
        return bool(self.gdrive_folder) and self.folder_file is None


class ReleasedFiles(Section):
    """The authors' released weights for one dataset (their README, "Pretrained Weight"): stage `released`."""
    adapt: SourceFile                           # the adaptation (retrieval) checkpoint, ckpts/pretrained/
    finetune: SourceFile                        # the trained captioner, ckpts/trained/


class DatasetParams(Section):
    """One dataset the project knows: where it comes from, how it is read, what differs for it."""
    source: Literal["synthesize", "download"]   # synthesize: the embedded generator; download: `files`
    format: Literal["clevr_change", "spot_the_diff", "ier"]   # the reader of its on-disk format
    label: str                                  # how tables and plots name it
    files: tuple[SourceFile, ...] = ()          # source download: the official files (PAPER.md section 7)
    root: str = "."                             # the dataset root inside the unpacked files
    overrides: dict[str, Any] = {}              # values of other sections for this dataset (e.g. adapt.epochs)
    released: ReleasedFiles | None = None       # the authors' released weights, where they published some

    @model_validator(mode="after")
    def _files_match_source(self) -> "DatasetParams":
        if (self.source == "download") != bool(self.files):
            raise ValueError("a dataset lists `files` exactly when its source is `download`")
        return self


class DownloadParams(Section):
    """How downloads behave (the files themselves are listed per dataset under `data`)."""
    retries: int = Field(ge=1)                  # attempts per origin
    backoff: float = Field(ge=0)                # seconds before the 2nd attempt, doubled after each
    timeout: float = Field(gt=0)                # seconds without data before an attempt fails
    archive_org_base: str                       # https://archive.org (tests point it at a local server)
    # What one archive may unpack to (data/extract.py): GB (10^9 bytes) in all, and a multiple of its own size.
    max_unpacked_gb: float = Field(gt=0)
    max_unpack_ratio: float = Field(gt=0)


class PrepareParams(Section):
    image_size: int = Field(ge=16)
    workers: int = Field(ge=1)
    # Sentences that are empty as distributed (Spot-the-Diff has pairs whose only sentence is ""):
    # keep = every sentence as the authors use it (such a pair is trained on and scored against "");
    # drop = empty sentences removed, and a pair left without any left out of every stage.
    empty_references: Literal["keep", "drop"]


class CaptionerParams(Section):
    heads: int = Field(ge=1)
    ffn: int = Field(ge=1)
    layers: int = Field(ge=1)          # encoder layers = decoder layers (layer-wise cross-attention)
    dropout: float = Field(ge=0, lt=1)


class ModelParams(Section):
    arch: str                          # an open_clip architecture name (ours live in model_configs/)
    pretrained: str                    # "pipeline" (the pretrain stage's weights), "openai", or a file path
    intra_layers: int = Field(ge=1)    # CLIP blocks run on each image alone; the rest run on the joint pair
    max_tokens: int = Field(ge=4)      # the authors' max_words (paper: 32): text positions, see text.py
    # The words the captioner scores: "clip", all 49,408 of CLIP's BPE (the authors); "train", only those
    # the training split's captions use (Captioner.restrict_output; the word embedding then keeps only their
    # rows, <start>'s and padding's: Captioner.compact_embedding), for a tiny model's speed.
    output_vocab: Literal["clip", "train"]
    captioner: CaptionerParams


class OptimParams(Section):
    """The authors' BertAdam (UniVL/CLIP4Clip) with its schedule; see train/optim.py."""
    lr: float = Field(gt=0)
    coef_lr: float = Field(gt=0)       # CLIP-origin parameters learn at lr * coef_lr
    weight_decay: float = Field(ge=0)
    betas: tuple[float, float]
    eps: float = Field(gt=0)
    warmup: float = Field(ge=0, lt=1)  # fraction of all steps
    schedule: Literal["warmup_cosine", "warmup_linear", "warmup_constant"]
    max_grad_norm: float = Field(ge=0)  # per tensor (BertAdam) and global


class PretrainParams(Section):
    seed: int
    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=2)
    lr: float = Field(gt=0)
    weight_decay: float = Field(ge=0)
    warmup: float = Field(ge=0, lt=1)
    scene_batches: bool                             # batches of before/after views of the same scenes (hard
                                                    # negatives) instead of random images


class AdaptParams(Section):
    seed: int
    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=2)
    distractor_swap_p: float = Field(ge=0, le=1)   # CLEVR: before image replaced by the distractor
    select_split: Literal["val", "test"]            # authors: test; we default to val
    freeze: tuple[str, ...]                         # name prefixes of frozen parameters
    max_logit_scale: float = Field(gt=0)            # clamp of the log logit scale after every step (ln 100)
    amp: bool                                       # bf16 autocast on a GPU; a CPU always runs fp32
    optim: OptimParams


class FinetuneParams(Section):
    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1)                   # scenes (groups) per step
    no_change_p: float = Field(gt=0, le=1)          # share of scenes whose no-change pair an epoch trains on
                                                    # (1.0: every one, as the paper)
    standardize_tokens: bool                        # captioner reads the frozen pair encoder's tokens centred
                                                    # and scaled per dimension (training split's statistics)
    patience: int = Field(ge=1)                     # stop once more than this many epochs in a row bring
                                                    # no gain (the authors' count: 10 stops after the 11th)
    freeze: tuple[str, ...]                         # name prefixes of parameters frozen in fine-tuning
    select_split: Literal["val", "test"]
    select_metric: Literal["CIDEr", "BLEU-4", "METEOR", "ROUGE-L"]
    select_max_len: int = Field(ge=1)               # greedy steps when decoding select_split each epoch
    eval_batch_size: int = Field(ge=1)
    coef_lr_tied: float | None = Field(gt=0)        # lr multiplier of the tied word/position embeddings;
                                                    # null = optim.coef_lr, as the authors group them
    amp: bool                                       # bf16 autocast on a GPU; a CPU always runs fp32
    optim: OptimParams

    @model_validator(mode="after")
    def _standardize_needs_a_frozen_encoder(self) -> "FinetuneParams":
        # Said when params load, not hours later when fine-tuning starts (train/finetune.py checks it again).
        if self.standardize_tokens and not any("pair_encoder.".startswith(prefix) for prefix in self.freeze):
            raise ValueError("standardize_tokens: true needs the whole pair encoder frozen (freeze: "
                             f"[pair_encoder.]): its tokens' statistics must not change; freeze is {list(self.freeze)}")
        return self


class DecodeParams(Section):
    split: Literal["val", "test"]
    max_len: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    beam_size: int = Field(ge=1)                    # 1 = greedy (the paper); > 1 = beam search


class EvaluateParams(Section):
    spice: bool                                     # also SPICE where Stanford CoreNLP's jars are installed; else
                                                    # skipped with a message (the authors do not report it)


class StageResources(Section):
    """What one job of a stage asks of a cluster (Snakemake `resources:`)."""
    gpus: int = Field(ge=0)        # adapt/finetune: > 1 runs one training process per GPU (torchrun)
    mem_mb: int = Field(ge=1)      # host memory
    runtime: int = Field(ge=1)     # minutes of wall time
    threads: int = Field(ge=0)     # CPU threads per job under Snakemake; 0: every core it was given (one such job
                                   # at a time). 1: jobs side by side, one thread each (DVC runs stages one at a
                                   # time and always gives them every core)


class Resources(Section):
    fetch: StageResources
    prepare: StageResources
    pretrain: StageResources
    adapt: StageResources
    finetune: StageResources
    decode: StageResources
    evaluate: StageResources       # evaluate, baseline and the report

    @model_validator(mode="after")
    def _one_process_stages(self) -> "Resources":
        for stage in ("fetch", "prepare", "pretrain", "decode", "evaluate"):
            if getattr(self, stage).gpus > 1:
                raise ValueError(f"resources.{stage}.gpus: this stage runs one process and uses at most one GPU; "
                                 f"only adapt and finetune run on several")
        return self


class ExecutionParams(Section):
    """How stages run, not what they compute: no stage's results depend on it, so it triggers no rerun."""
    checkpoint_every: int = Field(ge=0)   # training steps between resume checkpoints (0: at epoch ends only)
    resources: Resources


class Params(Section):
    profile: str
    profiles: dict[str, dict[str, Any]]
    datasets: tuple[str, ...]                       # the datasets the DAG runs (with seeds: its shape)
    seeds: tuple[int, ...]                          # every variant is fine-tuned once per seed
    released: tuple[str, ...]                       # datasets whose authors' released weights the DAG converts,
                                                    # decodes and scores (stage `released`)
    data: dict[str, DatasetParams]                  # every dataset the project knows
    dataset: str | None = None                      # set when resolved for one dataset (its overrides applied)
    download: DownloadParams
    synthesize: SynthesizeParams
    prepare: PrepareParams
    model: ModelParams
    pretrain: PretrainParams
    adapt: AdaptParams
    finetune: FinetuneParams
    decode: DecodeParams
    evaluate: EvaluateParams
    execution: ExecutionParams

    @model_validator(mode="after")
    def _consistent(self) -> "Params":
        if not self.datasets:
            raise ValueError("datasets must list at least one dataset")
        unknown = [d for d in self.datasets if d not in self.data]
        if unknown or len(set(self.datasets)) != len(self.datasets):
            raise ValueError(f"datasets {list(self.datasets)}: each must be a key of `data` "
                             f"(known: {sorted(self.data)}), listed once")
        outside = [d for d in self.released if d not in self.datasets or self.data[d].released is None]
        if outside or len(set(self.released)) != len(self.released):
            raise ValueError(f"released {list(self.released)}: each must be one of `datasets` "
                             f"({list(self.datasets)}) whose data.<dataset>.released lists the authors' files "
                             f"(known: {sorted(d for d, p in self.data.items() if p.released)}), listed once")
        if self.synthesize.max_objects < self.synthesize.min_objects:
            raise ValueError("synthesize.max_objects must be >= synthesize.min_objects")
        for key, value in (("decode.max_len", self.decode.max_len),
                           ("finetune.select_max_len", self.finetune.select_max_len)):
            if value > self.model.max_tokens:
                raise ValueError(f"{key} ({value}) exceeds model.max_tokens ({self.model.max_tokens})")
        if not self.seeds:
            raise ValueError("seeds must list at least one seed")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds {list(self.seeds)}: each seed must be listed once")
        return self


class ParamsError(ValueError):
    """params.yaml is missing, malformed, or has an unknown / mistyped key."""


def _merge(base: dict, override: dict, where: str, open_: bool = False) -> dict:
    """`base` with `override`'s values, recursively. Keys must exist in `base` (so a typo is an
    error), except below an `overrides` key, whose contents are checked when they are applied."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if key not in out and not open_:
            raise ParamsError(f"{where}.{key}: no such key in the base params (a profile only overrides existing "
                              f"keys){_did_you_mean(key, out)}")
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value, f"{where}.{key}", open_ or key == "overrides")
        else:
            out[key] = copy.deepcopy(value)
    return out


def _did_you_mean(key: Any, known) -> str:
    close = difflib.get_close_matches(str(key), [str(k) for k in known], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


# Sections a dataset's `overrides` may set: those that describe how to train and evaluate on it.
# `model` and `pretrain` are not among them: every dataset starts from the same CLIP weights.
_DATASET_SECTIONS = ("prepare", "adapt", "finetune", "decode")


# A layer of params as the user wrote them: the path of its root in params.yaml, and its tree. Values
# are merged layer over layer (base, profile, the dataset's overrides); an error names the key in the
# last layer that sets it, so that the user is sent to the line they wrote.
Layer = tuple[tuple[str, ...], dict]


def _tree(raw: Any, *keys: str) -> dict:
    """raw[k1][k2]..., or {} where a key is absent (a layer that does not write that part)."""
    for key in keys:
        raw = raw.get(key) if isinstance(raw, dict) else None
    return raw if isinstance(raw, dict) else {}


def resolve(raw: dict, profile: str | None = None, source: str = "params", dataset: str | None = None) -> Params:
    """Apply a profile's overrides to the raw params dict, then (with `dataset`) that dataset's
    `overrides`, and validate the result.

    Everything written is checked, whichever profile is active: the base params alone (a wrong base
    value that a profile overrides is still an error, named as written), then every profile merged
    over them, each with the overrides of every dataset it runs, and each against its CLIP
    architecture (`model.intra_layers`, `prepare.image_size`)."""
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: expected a mapping of sections at the top level")
    profile = profile or raw.get("profile", "embedded")
    profiles = raw.get("profiles") or {}
    if profile not in profiles:
        raise ParamsError(f"{source}: profile {profile!r} is not defined under 'profiles' (known: {sorted(profiles)})")
    base = {k: v for k, v in raw.items() if k not in ("profile", "profiles")}
    # Before any merge: a typo in a base key would otherwise surface as the profile's correct key
    # being "no such key", and a base value a profile overrides would never be looked at.
    _checked({**base, "profile": profile, "profiles": profiles}, source, "the base params, before any profile",
             [((), base)])
    active = _resolve_profile(base, profiles, profile, source, dataset)
    for other in profiles:   # not run now, but a mistake there is a mistake in this file
        if other != profile:
            _resolve_profile(base, profiles, other, source, None)
    return active


def _resolve_profile(base: dict, profiles: dict, profile: str, source: str, dataset: str | None) -> Params:
    """The params of `profile` (of `dataset` when given), every dataset it runs checked with its overrides."""
    written = profiles[profile] or {}
    where = ("profiles", profile)
    merged = _merge(base, written, ".".join(where))
    merged["profile"] = profile
    merged["profiles"] = profiles
    layers: list[Layer] = [((), base), (where, written)]
    what = f"profile {profile!r}"
    params = _checked(merged, source, what, layers)
    if dataset is not None and dataset not in params.datasets:
        raise ParamsError(
            f"{source} (profile {profile!r}): dataset {dataset!r} is not one this profile runs "
            f"(datasets: {list(params.datasets)}). Under DVC, dvc.yaml reads `datasets` and `seeds` "
            f"from the top level of {source}: set them with the profile, e.g. "
            f"dvc exp run -S profile={profile} -S 'datasets={_hydra_list(params.datasets)}'"
            + (f" -S 'released={_hydra_list(params.released)}'" if params.released else ""))
    for name in params.datasets if dataset is None else (dataset,):
        # The dataset's overrides as written in the base, then in the profile (which merged over them),
        # applied in that order: the same values as their merge, each key named where it is written.
        dataset_layers = [(("data", name, "overrides"), _tree(base, "data", name, "overrides")),
                          ((*where, "data", name, "overrides"), _tree(written, "data", name, "overrides"))]
        resolved = merged
        for at, overrides in dataset_layers:
            misplaced = sorted(set(overrides) - set(_DATASET_SECTIONS))
            if misplaced:
                raise ParamsError(f"{source}: {'.'.join(at)} may set only {list(_DATASET_SECTIONS)}; got {misplaced}")
            resolved = _merge(resolved, overrides, ".".join(at))
        what = f"profile {profile!r}, dataset {name!r}"
        resolved = _checked({**resolved, "dataset": name}, source, what, layers + dataset_layers)
        if name == dataset:
            return resolved
    return params


def _checked(merged: dict, source: str, what: str, layers: list[Layer]) -> Params:
    """`merged` validated, then checked against its CLIP architecture; errors name keys as written in `layers`."""
    return _check_architecture(_validate(merged, source, what, layers), source, what, layers)


def _written(loc: tuple, layers: list[Layer]) -> str:
    """The key at `loc` of the merged params as the user wrote it: under the last layer that sets it
    (the base's own key where none does, e.g. a missing key)."""
    for root, tree in reversed(layers):
        if _sets(tree, loc):
            return ".".join(map(str, (*root, *loc)))
    return ".".join(map(str, loc))


def _sets(tree: Any, loc: tuple) -> bool:
    for key in loc:
        if isinstance(tree, dict):
            if key not in tree:
                return False
            tree = tree[key]
        elif isinstance(tree, list) and isinstance(key, int) and 0 <= key < len(tree):
            tree = tree[key]
        else:   # a value set above `loc` (a scalar, a whole list): all below it comes from this layer
            return True
    return True


def _hydra_list(items) -> str:
    return "[" + ",".join(str(i) for i in items) + "]"


def _validate(merged: dict, source: str, what: str, layers: list[Layer]) -> Params:
    try:
        return Params.model_validate(merged)
    except ValidationError as err:
        lines = []
        for e in err.errors():
            loc = _written(e["loc"], layers) if e["loc"] else "(top level)"
            if e["type"] == "extra_forbidden":
                lines.append(f"  {loc}: unknown key{_did_you_mean(e['loc'][-1], _schema_keys(e['loc'][:-1]))}")
            elif e["type"] == "missing":
                lines.append(f"  {loc}: required key is missing")
            elif e["type"] == "value_error" and isinstance(e.get("input"), dict):
                # a whole section's check (a model validator): its message names the keys, and the
                # section itself (all of params.yaml at the top level) would bury it
                lines.append(f"  {loc}: {e['msg'] if e['loc'] else _keys_as_written(e['msg'], layers)}")
            else:
                lines.append(f"  {loc}: {e['msg']} (got {e.get('input')!r})")
        raise ParamsError(f"{source} ({what}) is invalid:\n" + "\n".join(lines)) from None


_DOTTED_KEY = re.compile(r"\b[a-z_]+(?:\.[a-z_0-9]+)+\b")


def _keys_as_written(message: str, layers: list[Layer]) -> str:
    """A check of the whole params (Params._consistent) names keys from the top (`decode.max_len`): each as
    the user wrote it (`profiles.smoke.decode.max_len`)."""
    def written(match: re.Match) -> str:
        loc = tuple(match.group().split("."))
        return _written(loc, layers) if loc[0] in Params.model_fields else match.group()
    return _DOTTED_KEY.sub(written, message)


def _schema_keys(loc: tuple) -> list[str]:
    """The keys the schema allows at `loc` (for a typo's suggestion); [] where that is no section."""
    ann: Any = Params
    for key in (*loc, None):
        while get_origin(ann) in (Union, types.UnionType):   # X | None: the section X
            args = [a for a in get_args(ann) if a is not type(None)]
            if len(args) != 1:
                return []
            ann = args[0]
        if key is None:
            break
        if get_origin(ann) in (dict, tuple):   # a dict's key or a tuple's index: its value type
            ann = get_args(ann)[-1 if get_origin(ann) is dict else 0]
        elif isinstance(ann, type) and issubclass(ann, BaseModel):
            field = ann.model_fields.get(key)
            if field is None:
                return []
            ann = field.annotation
        else:
            return []
    return list(ann.model_fields) if isinstance(ann, type) and issubclass(ann, BaseModel) else []


# -- the CLIP architecture the params name --------------------------------------------------------
# Read from the JSON files open_clip itself reads: importing open_clip (and torch) costs seconds,
# more than every other part of loading params, and most commands never build a model. These files
# are no PACKAGE_DATA of this module: they decide only whether params are accepted, not any result
# (models/build.py, which builds from them, declares them).
MODEL_CONFIG_DIR = Path(__file__).resolve().parent / "model_configs"   # ours (e.g. clip4idc-tiny)


@lru_cache(maxsize=None)
def _config_file(path: Path) -> dict | None:
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    cfg = cfg.get("model_cfg", cfg) if isinstance(cfg, dict) else None   # local-dir: {"model_cfg": ...}
    # open_clip registers only files with these keys (factory._rescan_model_configs)
    return cfg if isinstance(cfg, dict) and all(k in cfg for k in ("embed_dim", "vision_cfg", "text_cfg")) else None


def _architecture_config(arch: str) -> dict | None:
    """open_clip's config of `arch` as models/build.py gets it (None: unknown), without importing open_clip
    where this process has not: ours first (registered over open_clip's), then open_clip's own files. Once
    open_clip is imported, its registry is asked, which also holds configs added there at run time."""
    if arch.startswith("local-dir:"):
        return _config_file(Path(arch.removeprefix("local-dir:")) / "open_clip_config.json")
    if "/" in arch or "\\" in arch:   # open_clip names a config by its file's stem: no path is one
        return None
    cfg = _config_file(MODEL_CONFIG_DIR / f"{arch}.json")
    if cfg is not None:
        return cfg
    if "open_clip" in sys.modules:
        return sys.modules["open_clip"].get_model_config(arch)
    spec = importlib.util.find_spec("open_clip")   # finds the package without running it
    for folder in (spec.submodule_search_locations or []) if spec else []:
        cfg = _config_file(Path(folder) / "model_configs" / f"{arch}.json")
        if cfg is not None:
            return cfg
    return None


def _check_architecture(params: Params, source: str, what: str, layers: list[Layer]) -> Params:
    """`params` if what it asks of its CLIP architecture holds, else a ParamsError naming the keys as written:
    found at load, not by the stage that first builds the pair encoder (models/pair_encoder.py)."""
    arch = params.model.arch
    if arch.startswith("hf-hub:"):   # its config lives on the Hub: checked when the model is built
        return params

    def at(*loc: str) -> str:
        return _written(loc, layers)

    cfg = _architecture_config(arch)
    if cfg is None:
        ours = sorted(p.stem for p in MODEL_CONFIG_DIR.glob("*.json"))
        problems = [f"{at('model', 'arch')}: unknown CLIP architecture {arch!r}; this package adds {ours}, "
                    f"open_clip knows e.g. 'ViT-B-32-quickgelu' (see open_clip.list_models())"]
    else:
        vision = cfg["vision_cfg"]
        blocks, size = vision.get("layers", 12), vision.get("image_size", 224)   # open_clip's CLIPVisionCfg defaults
        problems = []
        if "timm_model_name" in vision or not isinstance(blocks, int):
            problems.append(f"{at('model', 'arch')}: {arch!r} has no open_clip ViT vision tower (a ResNet or timm "
                            f"tower has no token sequence for the pair encoder to split)")
        elif not 0 < params.model.intra_layers < blocks:
            problems.append(f"{at('model', 'intra_layers')}: {params.model.intra_layers} is out of range for the "
                            f"{blocks} vision blocks of {arch!r} ({at('model', 'arch')}): must be between 1 and "
                            f"{blocks - 1} (at least one block on each image alone, one on the joint pair)")
        square = tuple(size) if isinstance(size, (list, tuple)) else (size, size)
        if (params.prepare.image_size,) * 2 != square:
            problems.append(f"{at('prepare', 'image_size')}: {params.prepare.image_size} must equal the input size "
                            f"of {arch!r} ({at('model', 'arch')}), {size}: prepare writes images of this size "
                            f"and the vision tower takes only its own")
    if problems:
        raise ParamsError(f"{source} ({what}) is invalid:\n" + "\n".join(f"  {p}" for p in problems))
    return params


def load(path: str | Path = "params.yaml", profile: str | None = None, dataset: str | None = None) -> Params:
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"params file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ParamsError(f"{path} is not valid YAML: {err}") from err
    return resolve(raw, profile, source=str(path), dataset=dataset)


def from_snakemake_config(config: dict, path: str | Path = "params.yaml") -> Params:
    """Validate Snakemake's `config` (params.yaml plus `--config` overrides).

    Rules call `clip4idc` with `--params params.yaml --profile <profile>`, so the only override
    that reaches the stages is `profile`; any other `--config` key would make Snakemake's view
    differ from what the commands read. Refuse it rather than run a silently different job.
    """
    path = Path(path)
    on_disk = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else None
    if on_disk is None:
        raise ParamsError(f"params file {path} does not exist or is empty")
    differing = sorted(k for k in set(config) | set(on_disk)
                       if k != "profile" and config.get(k) != on_disk.get(k))
    if differing:
        raise ParamsError(f"--config may only set `profile`; edit {path} to change {differing}")
    return resolve(config, config.get("profile"), source=str(path))
