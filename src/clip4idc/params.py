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
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

VARIANTS = ("clip-ft", "no-adapt", "adapt")


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


class PrepareParams(Section):
    format: Literal["clevr_change", "spot_the_diff", "ier"]   # the reader of the on-disk format
    image_size: int = Field(ge=16)
    workers: int = Field(ge=1)


class CaptionerParams(Section):
    heads: int = Field(ge=1)
    ffn: int = Field(ge=1)
    layers: int = Field(ge=1)          # encoder layers = decoder layers (layer-wise cross-attention)
    dropout: float = Field(ge=0, lt=1)


class ModelParams(Section):
    arch: str                          # an open_clip architecture name (ours live in model_configs/)
    pretrained: str                    # "pipeline" (the pretrain stage's weights), "openai", or a file path
    intra_layers: int = Field(ge=1)    # CLIP blocks run on each image alone; the rest run on the joint pair
    max_tokens: int = Field(ge=4)      # caption length incl. <start>/<end> (paper: 32)
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


class AdaptParams(Section):
    seed: int
    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=2)
    distractor_swap_p: float = Field(ge=0, le=1)   # CLEVR: before image replaced by the distractor
    select_split: Literal["val", "test"]            # authors: test; we default to val
    freeze: tuple[str, ...]                         # name prefixes of frozen parameters
    max_logit_scale: float = Field(gt=0)            # clamp of log logit scale (ln 100)
    optim: OptimParams


class FinetuneParams(Section):
    seeds: tuple[int, ...]                          # every variant is trained once per seed
    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1)                   # scenes (groups) per step
    patience: int = Field(ge=1)                     # epochs without a gain before stopping
    select_split: Literal["val", "test"]
    select_metric: Literal["CIDEr", "BLEU-4", "METEOR", "ROUGE-L"]
    select_max_len: int = Field(ge=1)               # greedy steps when decoding select_split each epoch
    eval_batch_size: int = Field(ge=1)
    coef_lr_tied: float | None = Field(gt=0)        # lr multiplier of the tied word/position embeddings;
                                                    # null = optim.coef_lr, as the authors group them
    optim: OptimParams


class DecodeParams(Section):
    split: Literal["val", "test"]
    max_len: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    beam_size: int = Field(ge=1)                    # 1 = greedy (the paper); > 1 = beam search


class ReportParams(Section):
    dataset_label: str                              # how tables and plots name the data the run used


class Params(Section):
    profile: str
    profiles: dict[str, dict[str, Any]]
    synthesize: SynthesizeParams
    prepare: PrepareParams
    model: ModelParams
    pretrain: PretrainParams
    adapt: AdaptParams
    finetune: FinetuneParams
    decode: DecodeParams
    report: ReportParams

    @model_validator(mode="after")
    def _consistent(self) -> "Params":
        if self.synthesize.max_objects < self.synthesize.min_objects:
            raise ValueError("synthesize.max_objects must be >= synthesize.min_objects")
        for key, value in (("decode.max_len", self.decode.max_len),
                           ("finetune.select_max_len", self.finetune.select_max_len)):
            if value > self.model.max_tokens:
                raise ValueError(f"{key} ({value}) exceeds model.max_tokens ({self.model.max_tokens})")
        if not self.finetune.seeds:
            raise ValueError("finetune.seeds must list at least one seed")
        return self


class ParamsError(ValueError):
    """params.yaml is missing, malformed, or has an unknown / mistyped key."""


def _merge(base: dict, override: dict, where: str) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if key not in out:
            raise ParamsError(f"{where}.{key}: no such key in the base params (a profile only overrides existing keys)")
        if isinstance(value, dict) and isinstance(out[key], dict):
            out[key] = _merge(out[key], value, f"{where}.{key}")
        else:
            out[key] = value
    return out


def resolve(raw: dict, profile: str | None = None, source: str = "params") -> Params:
    """Apply a profile's overrides to the raw params dict and validate the result."""
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: expected a mapping of sections at the top level")
    profile = profile or raw.get("profile", "embedded")
    profiles = raw.get("profiles") or {}
    if profile not in profiles:
        raise ParamsError(f"{source}: profile {profile!r} is not defined under 'profiles' (known: {sorted(profiles)})")
    merged = _merge({k: v for k, v in raw.items() if k not in ("profile", "profiles")},
                    profiles[profile] or {}, f"profiles.{profile}")
    merged["profile"] = profile
    merged["profiles"] = profiles
    try:
        return Params.model_validate(merged)
    except ValidationError as err:
        lines = []
        for e in err.errors():
            loc = ".".join(str(x) for x in e["loc"]) or "(top level)"
            if e["type"] == "extra_forbidden":
                lines.append(f"  {loc}: unknown key")
            elif e["type"] == "missing":
                lines.append(f"  {loc}: required key is missing")
            else:
                lines.append(f"  {loc}: {e['msg']} (got {e.get('input')!r})")
        raise ParamsError(f"{source} (profile {profile!r}) is invalid:\n" + "\n".join(lines)) from None


def load(path: str | Path = "params.yaml", profile: str | None = None) -> Params:
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"params file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ParamsError(f"{path} is not valid YAML: {err}") from err
    return resolve(raw, profile, source=str(path))


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
