"""Create models: open_clip CLIP (our tiny configs, random init, OpenAI weights, or a state-dict file), and
the caption model of each variant on it, new or reloaded from its checkpoint.

`create_clip` is the only place this project turns an architecture name and a weights source into
a CLIP model, so every stage (pretrain, adapt, finetune, reload for decoding) builds exactly the
same architecture from the same two values.

Note on OpenAI weights: they were trained with QuickGELU. open_clip's `ViT-B-32` config uses
nn.GELU and only *warns* when OpenAI weights are loaded into it; `ViT-B-32-quickgelu` is the same
architecture with the right activation. Because a fine-tuned checkpoint is later rebuilt with
random init (`pretrained=None`) and then loaded, the activation must follow from the architecture
name alone, so `create_clip(..., "openai")` requires a QuickGELU architecture.
"""
from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import open_clip
import torch

from ..errors import CheckpointError, WeightsUnavailableError
from ..params import MODEL_CONFIG_DIR, VARIANTS, ModelParams
from ..runtime import REBUILD, load_checkpoint
from .idc import AdaptModel, CaptionModel

# Files of the package read at run time (relative to its folder): code, for deps.py.
PACKAGE_DATA = ("model_configs/*.json",)

# Two lines (`clip4idc` prints it after "error: "): what failed and why, then both ways to get the weights.
_OPENAI_HELP = (
    "OpenAI CLIP weights for {arch!r} could not be loaded (offline with an empty Hugging Face cache?): {error}\n"
    "To get them: on a machine with network access run "
    "python -c \"import open_clip; open_clip.create_model('{arch}', pretrained='openai')\" and copy "
    "~/.cache/huggingface (or $HF_HOME) here; or there save them with "
    "python -c \"import open_clip, torch; torch.save(open_clip.create_model('{arch}', pretrained='openai')"
    ".state_dict(), 'clip-{arch}-openai.pt')\" and set `model.pretrained` to that file's path."
)


# The checkpoints the pipeline writes, by their path in the project folder, and the DVC stage that writes
# each: what the message about one that cannot be read tells the user to rerun (its Snakemake target is the path).
_WRITERS = (
    (re.compile(r"(?:^|/)(models/pretrain/clip\.pt)$"), "pretrain"),
    (re.compile(r"(?:^|/)(models/(?P<d>[^/]+)/adapt/model\.pt)$"), "adapt@{d}"),
    (re.compile(r"(?:^|/)(models/(?P<d>[^/]+)/released/(?:adapt|finetune)\.pt)$"), "released@{d}"),
    (re.compile(r"(?:^|/)(models/(?P<d>[^/]+)/finetune/adapt/seed(?P<s>-?\d+)\.pt)$"), "finetune_adapt@{d}-{s}"),
    (re.compile(r"(?:^|/)(models/(?P<d>[^/]+)/finetune/(?P<v>[^/]+)/seed(?P<s>-?\d+)\.pt)$"), "finetune@{d}-{v}-{s}"),
)
# What each kind of our checkpoints is called, and what writes it: for the message about a file of another kind.
_KINDS = {"adapt": ("an adaptation checkpoint", "the adapt stage writes them, models/<dataset>/adapt/model.pt"),
          "finetune": ("a fine-tuning checkpoint", "the finetune stage writes them, "
                                                   "models/<dataset>/finetune/<variant>/seed<seed>.pt")}


def rebuild_hint(path: str | Path, otherwise: str = REBUILD) -> str:
    """How to get back the checkpoint at `path` once it is found unusable: for a file the pipeline writes
    (known by its path), the Snakemake target and the DVC stage to rerun once it is deleted; else `otherwise`."""
    posix = Path(path).as_posix()
    for pattern, stage in _WRITERS:
        if m := pattern.search(posix):
            # Deleted first: Snakemake and DVC alike rerun a stage whose output is missing, not one whose
            # output is merely broken.
            return (f"{REBUILD} (from the project folder: `snakemake {m[1]}` or "
                    f"`dvc repro {stage.format(**m.groupdict())}`)")
    return otherwise


def read_checkpoint(path: str | Path, kind: str) -> dict:
    """Our checkpoint of `kind` ('adapt' or 'finetune') at `path`, with its state dict. Any other file raises
    CheckpointError naming it: one that cannot be read says how to rebuild it, one of another kind (CLIP's
    weights, a bare state dict, the other kind) says what writes the right one."""
    ckpt = load_checkpoint(path, rebuild_hint(path))
    found = ckpt.get("kind") if isinstance(ckpt, dict) else None
    name, written_by = _KINDS[kind]
    if found != kind:
        raise CheckpointError(f"{path} is not {name} (kind={found!r}); {written_by}")
    if not isinstance(ckpt.get("state_dict"), dict):
        raise CheckpointError(f"{path} is {name} without its weights (no 'state_dict'); {rebuild_hint(path)}")
    return ckpt


def _load_state(model: torch.nn.Module, state: dict, path: str | Path, expected: str, rebuild: str) -> None:
    """`model.load_state_dict(state)`, strict; weights that do not fit are a CheckpointError naming `path`,
    what it should have matched (`expected`), the keys (not torch's page of them) and how to rebuild it."""
    names = set(model.state_dict())
    missing, unexpected = sorted(names - set(state)), sorted(set(state) - names)
    if missing or unexpected:
        raise CheckpointError(f"{path} does not match {expected}: {len(missing)} missing keys (e.g. {missing[:5]}), "
                              f"{len(unexpected)} unexpected keys (e.g. {unexpected[:5]}); {rebuild}")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:  # shape mismatches, listed one per line
        said = "; ".join(line.strip() for line in str(e).splitlines()[1:6])
        raise CheckpointError(f"{path} does not match {expected}: {said}; {rebuild}") from e


def register_model_configs() -> None:
    """Make this package's architectures (e.g. `clip4idc-tiny`) known to open_clip. Idempotent."""
    ours = {p.stem for p in MODEL_CONFIG_DIR.glob("*.json")}
    if ours and not ours <= set(open_clip.list_models()):
        open_clip.add_model_config(MODEL_CONFIG_DIR)


def _model_config(arch: str) -> dict:
    register_model_configs()
    cfg = open_clip.get_model_config(arch)
    if cfg is None:
        ours = sorted(p.stem for p in MODEL_CONFIG_DIR.glob("*.json"))
        raise ValueError(f"unknown CLIP architecture {arch!r}; this package adds {ours}, "
                         f"open_clip knows e.g. 'ViT-B-32-quickgelu' (see open_clip.list_models())")
    return cfg


class _DropRecords(logging.Filter):
    """Drops the records whose message contains `text`."""

    def __init__(self, text: str):
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


@contextlib.contextmanager
def _root_records_dropped(text: str) -> Iterator[None]:
    """open_clip logs on the root logger: its records that contain `text` are dropped meanwhile."""
    root = logging.getLogger()
    quiet = _DropRecords(text)
    root.addFilter(quiet)
    try:
        yield
    finally:
        root.removeFilter(quiet)


def _weights_loaded_next():
    """For a model whose weights are loaded right after it is built: open_clip warns "initialized
    randomly" on the root logger, which would then be false and mislead whoever reads the log."""
    return _root_records_dropped("initialized randomly")


def _load_state_dict_file(model: torch.nn.Module, path: Path, arch: str) -> None:
    # The pipeline's clip.pt names the stage that writes it; a file of the user's own (model.pretrained) none.
    rebuild = rebuild_hint(path, f"write it again (CLIP weights of {arch!r} saved with torch.save)")
    checkpoint = load_checkpoint(path, rebuild)
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("kind"), str):
        # One of ours (its weights would only show as hundreds of unexpected keys): say which.
        raise CheckpointError(f"{path} is a checkpoint of kind {checkpoint['kind']!r}, not CLIP weights: expected a "
                              f"state dict of architecture {arch!r}, e.g. the pretrain stage's output, "
                              f"models/pretrain/clip.pt")
    state = checkpoint["state_dict"] if isinstance(checkpoint, dict) and "state_dict" in checkpoint else checkpoint
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, expected a CLIP state dict "
                              f"(or a dict with a 'state_dict' key)")
    if state and all(k.startswith("module.") for k in state):  # saved from a DDP-wrapped model
        state = {k[len("module."):]: v for k, v in state.items()}
    _load_state(model, state, path, f"architecture {arch!r}", rebuild)


def create_clip(arch: str, pretrained: str | None) -> open_clip.CLIP:
    """Build an open_clip CLIP, in fp32, in whatever train/eval mode open_clip returns.

    pretrained: None → random init; "openai" → OpenAI weights via open_clip (hub cache);
    anything else → path to a state-dict file (raw, or a dict with a "state_dict" key), strict keys.
    """
    cfg = _model_config(arch)
    if pretrained is None:
        model = open_clip.create_model(arch, pretrained=None)
    elif pretrained == "openai":
        if not cfg.get("quick_gelu", False):
            raise ValueError(
                f"OpenAI CLIP weights were trained with QuickGELU but architecture {arch!r} uses GELU; "
                f"use the QuickGELU variant (e.g. 'ViT-B-32-quickgelu' instead of 'ViT-B-32') so that "
                f"reloading a checkpoint from the architecture name builds the same activation")
        try:
            # open_clip also logs the failure on the root logger; the error below says it, with the remedy
            with _root_records_dropped("Failed to download weights"):
                model = open_clip.create_model(arch, pretrained="openai")
        except Exception as e:  # network errors, missing cache, HF offline mode …
            # The cause's first line: huggingface_hub's next ones advise on its own offline mode.
            said = str(e).strip().split("\n", 1)[0]
            raise WeightsUnavailableError(_OPENAI_HELP.format(arch=arch, error=said)) from e
    else:
        path = Path(pretrained)
        if not path.is_file():
            raise FileNotFoundError(
                f"CLIP weights file not found: {path} (expected a state dict of architecture {arch!r} "
                f"saved with torch.save, e.g. the pretrain stage's output or OpenAI weights saved to a file)")
        with _weights_loaded_next():
            model = open_clip.create_model(arch, pretrained=None)
        _load_state_dict_file(model, path, arch)
    # OpenAI weights come as fp16 on some paths; training code assumes fp32 masters (autocast for speed).
    return model.float()


def get_tokenizer(arch: str):
    """open_clip's tokenizer for `arch` (for our configs: CLIP BPE, lower-cased, context from the config)."""
    _model_config(arch)
    return open_clip.get_tokenizer(arch)


def build_caption_model(variant: str, model_cfg: ModelParams, clip_weights: str | None,
                        adapt_checkpoint: str | Path | None = None) -> CaptionModel:
    """The caption model of `variant` as fine-tuning starts it: on CLIP's weights (`clip_weights`), or for
    `adapt` on the adaptation checkpoint."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")
    if (variant == "adapt") != (adapt_checkpoint is not None):
        raise ValueError(f"variant {variant!r}: an adaptation checkpoint is "
                         f"{'required' if variant == 'adapt' else 'not used'}")
    # The adaptation checkpoint holds all of CLIP, so the adapt variant starts from random
    # weights and overwrites every one of them from it (open_clip's "initialized randomly" would be false).
    with _weights_loaded_next() if variant == "adapt" else contextlib.nullcontext():
        clip = create_clip(model_cfg.arch, None if variant == "adapt" else clip_weights)
    cap = model_cfg.captioner
    kwargs = dict(intra_layers=model_cfg.intra_layers, heads=cap.heads, ffn=cap.ffn, layers=cap.layers,
                  dropout=cap.dropout)
    if variant == "clip-ft":
        return CaptionModel.from_clip(clip, joint=False, **kwargs)
    if variant == "no-adapt":
        return CaptionModel.from_clip(clip, joint=True, **kwargs)
    adapted = AdaptModel(clip, model_cfg.intra_layers)
    ckpt = read_checkpoint(adapt_checkpoint, "adapt")
    _load_state(adapted, ckpt["state_dict"], adapt_checkpoint,
                f"the profile's model (model.arch {model_cfg.arch!r}, model.intra_layers {model_cfg.intra_layers})",
                rebuild_hint(adapt_checkpoint))
    return CaptionModel.from_clip(clip, joint=True, pair_encoder=adapted.pair_encoder, **kwargs)


def adapt_model_of(checkpoint: dict) -> AdaptModel:
    """The stage-1 model of an adaptation checkpoint's content (the adapt stage's output, or the authors'
    adaptation checkpoint converted by models/released.py), built from its own `model` section, in eval mode."""
    if checkpoint.get("kind") != "adapt":
        raise CheckpointError(f"not an adaptation checkpoint (kind={checkpoint.get('kind')!r})")
    model_cfg = ModelParams.model_validate(checkpoint["model"], strict=False)
    with _weights_loaded_next():
        model = AdaptModel(create_clip(model_cfg.arch, None), model_cfg.intra_layers)
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval()


def load_caption_model(checkpoint: str | Path) -> tuple[CaptionModel, dict]:
    """Rebuild a fine-tuned model from its self-describing checkpoint (no other file needed).

    A file that cannot be read as a checkpoint, or holds anything but the finetune stage's output (an
    adaptation checkpoint, CLIP's weights, a bare state dict), raises CheckpointError naming it (`read_checkpoint`).
    """
    ckpt = read_checkpoint(checkpoint, "finetune")
    model_cfg = ModelParams.model_validate(ckpt["model"], strict=False)
    # `adapt` and `no-adapt` share one architecture; the weights come from the checkpoint.
    architecture = "clip-ft" if ckpt["variant"] == "clip-ft" else "no-adapt"
    with _weights_loaded_next():
        model = build_caption_model(architecture, model_cfg, None, None)
    output_ids = ckpt["state_dict"].get("captioner.output_ids")
    if output_ids is not None:   # trained with an output vocabulary: score the same words
        model.captioner.restrict_output(output_ids)
    embedding_ids = ckpt["state_dict"].get("captioner.embedding_ids")
    if embedding_ids is not None:   # and a compact word embedding: the same rows
        model.captioner.compact_embedding(embedding_ids)
    shift = ckpt["state_dict"].get("captioner.input_shift")
    if shift is not None:   # trained on standardised pair tokens: standardise them the same way
        model.captioner.standardize_inputs(shift, ckpt["state_dict"]["captioner.input_scale"])
    _load_state(model, ckpt["state_dict"], checkpoint, "the model its own `model` section describes",
                rebuild_hint(checkpoint))
    return model.eval(), ckpt
