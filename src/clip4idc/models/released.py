"""The authors' released weights as this project's self-describing checkpoints.

The authors (github.com/sushizixin/CLIP4IDC, README "Pretrained Weight") publish, for CLEVR-Change and
Spot-the-Diff, plain state dicts written by `torch.save(model.state_dict())` (main_task_*.py `save_model`):

- `ckpts/pretrained/pytorch_model.bin.<clevr|spot>`: the adaptation (retrieval) stage. Their `CLIP4IDC`
  with task_type retrieval holds only `clip.*`: the whole CLIP, the pair parameters inside its vision tower.
  It becomes an `adapt` checkpoint (the adapt stage's format, fine-tuning's `adapt` variant starts from it).
- `ckpts/trained/pytorch_model.bin.<clevr|spot>`: the fine-tuning (caption) stage: `clip.*` plus `decoder.*`,
  their UniVL-style `DecoderModel`, which holds the captioner's encoder *and* decoder. It becomes a
  `finetune` checkpoint of the `adapt` variant, which `load_caption_model` rebuilds and decodes.

Their `module_cross.CrossModel` is imported by modeling.py but never built (`self.cross` stays None), so
no `cross.*` key can occur; their `PositionwiseFeedForward` is defined but used by no layer.

The key map (`_rules`) was read from their modeling.py, module_clip.py, module_decoder.py and
until_module.py, parameter by parameter. No layout differs, so no tensor is transposed, split or joined:
their CLIP blocks are OpenAI's (`nn.MultiheadAttention`, fused `attn.in_proj_*`), as are open_clip's, under
the same names; their captioner, like ours, has separate query/key/value projections, and its attention
output projection is the `dense` of `BertSelfOutput`. Every Linear weight is [out, in] on both sides. The
one transform is the dtype: their `convert_weights` stores CLIP's Linear, Conv and attention weights and
`proj` / `text_projection` in fp16, everything else in fp32; ours are all fp32.

Function, layer by layer (tests/test_released.py restates their forward and compares the outputs):
- Vision: conv1 patches, CLS, positional embedding, `ln_pre`; the first `intra_num_hidden_layers` blocks on
  each image; before (`bef_embedding`) / after (`aft_embedding`) vectors added to every token, the two
  sequences concatenated, `joint_positional_embedding`, `ln_mid`; the remaining blocks on the pair;
  `ln_post` and `proj` on every token. Pre-LN blocks, QuickGELU, LayerNorm eps 1e-5, heads = width / 64.
  Ours is the same (pair_encoder.py).
- Captioner: embeddings (CLIP's token and positional embedding, tied) → LayerNorm (eps 1e-12, "TF style",
  the same formula as torch's) → dropout; encoder layers over the 2T projected visual tokens, decoder layer i
  cross-attending to encoder layer i's output; post-LN everywhere (dense → dropout → LayerNorm(x + input)),
  erf GELU, the LM head dense → GELU → LayerNorm → word embedding (tied) + bias. Ours is the same
  (captioner.py). Their masks are additive -10000 (causal self-attention; the visual mask is all ones), which
  after softmax in fp32 equals our boolean causal mask.
- Numerics, not function: their CLIP runs in fp16, ours in fp32, so a converted model computes what theirs
  computes without their fp16 rounding of activations (DEVIATIONS.md rows 6 and 13).

What a state dict cannot say is taken from the profile the caller passes (`AUTHORS_SETTINGS` holds the
authors' values, which the paper profile must equal): intra layers, attention heads of the captioner,
caption length, dropout. Everything the shapes do say (widths, layer counts, patch and image size, token
counts, vocabulary, FFN width, the output words) is read from the file and must equal the profile.

Conversion is strict: every key of the file is mapped or deliberately ignored (with the reason, in
`_rules`), every parameter and buffer of our model is filled, every shape must match, and tensors that are
one tied tensor in their model must be equal in the file. Any violation raises `CheckpointConversionError`
naming every offending key at once.
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from open_clip.model import CLIPTextCfg, CLIPVisionCfg

from ..data.download import sha256_of
from ..errors import CheckpointConversionError
from ..params import ModelParams
from ..runtime import save_checkpoint
from .build import _model_config, _weights_loaded_next, build_caption_model, create_clip
from .idc import AdaptModel

Kind = Literal["finetune", "adapt"]
ORIGIN = "github.com/sushizixin/CLIP4IDC (authors' release)"

# Settings the authors' code fixes but their files do not record; the paper profile holds the same values
# (tests/test_released.py). A reduced test model may differ: the converter takes them from the profile.
AUTHORS_SETTINGS = {
    "intra_layers": 9,        # main_task_*.py --intra_num_hidden_layers (default 9; the README commands keep it)
    "max_tokens": 32,         # README commands: --max_words 32
    "captioner.heads": 8,     # modules/decoder-base/decoder_config.json num_attention_heads
    "captioner.dropout": 0.1,  # decoder_config.json hidden_dropout_prob / attention_probs_dropout_prob
}
HEAD_WIDTH = 64               # their CLIP: heads = width // 64 in both towers (modeling.py, module_clip.py)

# One OpenAI CLIP block (their module_clip.ResidualAttentionBlock); open_clip kept every name.
_CLIP_BLOCK = ("ln_1.weight", "ln_1.bias", "attn.in_proj_weight", "attn.in_proj_bias", "attn.out_proj.weight",
               "attn.out_proj.bias", "ln_2.weight", "ln_2.bias", "mlp.c_fc.weight", "mlp.c_fc.bias",
               "mlp.c_proj.weight", "mlp.c_proj.bias")
# CLIP's own vision parameters (their VisualTransformer minus what CLIP4IDC added), same names in open_clip.
_VISION = ("conv1.weight", "class_embedding", "positional_embedding", "ln_pre.weight", "ln_pre.bias",
           "ln_post.weight", "ln_post.bias", "proj",
           *(f"transformer.resblocks.{{n}}.{p}" for p in _CLIP_BLOCK))
# CLIP4IDC's pair parameters: in their VisualTransformer, in our PairEncoder (theirs → ours).
_PAIR = (("bef_embedding", "before_embedding"), ("aft_embedding", "after_embedding"),
         ("joint_positional_embedding", "joint_positional_embedding"),
         ("ln_mid.weight", "ln_mid.weight"), ("ln_mid.bias", "ln_mid.bias"))
# CLIP's text tower beyond its embeddings, same names in open_clip.
_TEXT_TOWER = (*(f"transformer.resblocks.{{n}}.{p}" for p in _CLIP_BLOCK),
               "ln_final.weight", "ln_final.bias", "text_projection", "logit_scale")
_TEXT_EMBEDDINGS = ("token_embedding.weight", "positional_embedding")


@dataclass(frozen=True)
class _Rule:
    """One key of the authors' layout. `{n}` in `theirs` and `ours` stands for the same block index.

    ours: the keys of our model it fills (two when our model names one tensor twice: AdaptModel lists CLIP's
    vision tower as `clip.visual.*` and `pair_encoder.visual.*`); empty when the key is deliberately ignored.
    reason: why it is ignored, or (convertible False) why it cannot become our model's function.
    """
    theirs: str
    ours: tuple[str, ...] = ()
    reason: str = ""
    convertible: bool = True

    @staticmethod
    def _regex(pattern: str) -> re.Pattern:
        return re.compile(r"(?P<n>\d+)".join(re.escape(part) for part in pattern.split("{n}")) + r"\Z")

    def match(self, key: str) -> dict[str, str] | None:
        found = self._regex(self.theirs).match(key)
        return None if found is None else found.groupdict()

    def targets(self, key: str) -> tuple[str, ...]:
        """Our keys that their `key` fills (it must match)."""
        fields = self.match(key)
        return tuple(o.format(**fields) for o in self.ours)

    def source_for(self, our_key: str) -> str | None:
        """Their key that fills `our_key` under this rule, if it does."""
        for pattern in self.ours:
            found = self._regex(pattern).match(our_key)
            if found is not None:
                return self.theirs.format(**found.groupdict())
        return None


def _bert_attention(theirs: str, attn: str, ln: str) -> list[tuple[str, str]]:
    """Their DecoderAttention = MultiHeadAttention `att` (query/key/value, no output projection) + BertSelfOutput
    `output` (dense, dropout, LayerNorm of the sum with the query input) → our Attention (query/key/value/out)
    and the post-LN LayerNorm after it."""
    pairs = []
    for w in ("weight", "bias"):
        pairs += [(f"{theirs}.att.{p}.{w}", f"{attn}.{p}.{w}") for p in ("query", "key", "value")]
        pairs += [(f"{theirs}.output.dense.{w}", f"{attn}.out.{w}"), (f"{theirs}.output.LayerNorm.{w}", f"{ln}.{w}")]
    return pairs


def _bert_ffn(theirs: str, ours: str) -> list[tuple[str, str]]:
    """Their BertIntermediate (dense, GELU) + BertOutput (dense, dropout, LayerNorm of the sum) → our
    FeedForward (Linear `ffn.0`, GELU, Linear `ffn.2`) and `ln_ffn`."""
    return [pair for w in ("weight", "bias") for pair in (
        (f"{theirs}.intermediate.dense.{w}", f"{ours}.ffn.0.{w}"), (f"{theirs}.output.dense.{w}", f"{ours}.ffn.2.{w}"),
        (f"{theirs}.output.LayerNorm.{w}", f"{ours}.ln_ffn.{w}"))]


def _decoder_pairs() -> list[tuple[str, str]]:
    """Their DecoderModel (`decoder.*`) → our Captioner (`captioner.*`)."""
    d, c = "decoder", "captioner"
    head = f"{d}.classifier.cls.predictions"
    pairs = [
        # Tied in their model (DecoderEmbeddings gets CLIP's token embedding and positional embedding weights,
        # the LM head's `decoder` Linear the token embedding): one tensor, saved under every name.
        (f"{d}.embeddings.word_embeddings.weight", f"{c}.token_embedding.weight"),
        (f"{d}.embeddings.position_embeddings.weight", f"{c}.positional_embedding"),
        (f"{head}.decoder.weight", f"{c}.token_embedding.weight"),
        (f"{d}.embeddings.LayerNorm.weight", f"{c}.ln_embed.weight"),
        (f"{d}.embeddings.LayerNorm.bias", f"{c}.ln_embed.bias"),
        (f"{head}.transform.dense.weight", f"{c}.head.dense.weight"),
        (f"{head}.transform.dense.bias", f"{c}.head.dense.bias"),
        (f"{head}.transform.LayerNorm.weight", f"{c}.head.ln.weight"),
        (f"{head}.transform.LayerNorm.bias", f"{c}.head.ln.bias"),
        (f"{head}.bias", f"{c}.head.bias"),
    ]
    enc, dec = f"{d}.encoder.layer.{{n}}", f"{d}.decoder.layer.{{n}}"
    pairs += _bert_attention(f"{enc}.slf_attn", f"{c}.encoder.{{n}}.attn", f"{c}.encoder.{{n}}.ln_attn")
    pairs += _bert_ffn(enc, f"{c}.encoder.{{n}}")
    pairs += _bert_attention(f"{dec}.slf_attn", f"{c}.decoder.{{n}}.self_attn", f"{c}.decoder.{{n}}.ln_self")
    pairs += _bert_attention(f"{dec}.enc_attn", f"{c}.decoder.{{n}}.cross_attn", f"{c}.decoder.{{n}}.ln_cross")
    pairs += _bert_ffn(dec, f"{c}.decoder.{{n}}")
    return pairs


def _rules(kind: Kind) -> list[_Rule]:
    """The strict key map of one kind of file (module docstring)."""
    if kind == "adapt":
        # AdaptModel holds the whole CLIP, and names its vision tower twice.
        rules = [_Rule(f"clip.visual.{k}", (f"clip.visual.{k}", f"pair_encoder.visual.{k}")) for k in _VISION]
        rules += [_Rule(f"clip.{k}", (f"clip.{k}",)) for k in (*_TEXT_EMBEDDINGS, *_TEXT_TOWER)]
    else:
        rules = [_Rule(f"clip.visual.{k}", (f"pair_encoder.visual.{k}",)) for k in _VISION]
        rules += [_Rule("clip.token_embedding.weight", ("captioner.token_embedding.weight",)),
                  _Rule("clip.positional_embedding", ("captioner.positional_embedding",))]
        rules += [_Rule(f"clip.{k}", reason="CLIP's text tower: their caption model holds the whole CLIP and runs "
                                            "it in forward, but no caption depends on it (only the token and "
                                            "positional embeddings, tied to the captioner, are used); our "
                                            "CaptionModel has no text tower") for k in _TEXT_TOWER]
        rules += [_Rule(theirs, (ours,)) for theirs, ours in _decoder_pairs()]
    rules += [_Rule(f"clip.visual.{theirs}", (f"pair_encoder.{ours}",)) for theirs, ours in _PAIR]
    rules.append(_Rule("clip.visual.conv2.weight", convertible=False, reason=(
        "their --linear_patch 3d: patches of the pair embedded by a Conv3d over both frames instead of conv1 "
        "per image; our pair encoder embeds each image alone (the README commands use --linear_patch 2d, "
        "whose files have no conv2)")))
    return rules


# --- the configuration: read from the file's shapes, compared with the profile ----------------------------

def _shape(state: Mapping[str, torch.Tensor], key: str) -> tuple[int, ...] | None:
    return tuple(state[key].shape) if key in state and torch.is_tensor(state[key]) else None


def _blocks(state: Mapping[str, torch.Tensor], prefix: str) -> int:
    """Blocks under `prefix` (the highest index + 1: a gap shows up as missing keys, not as fewer blocks)."""
    found = [int(m.group(1)) for k in state if (m := re.match(re.escape(prefix) + r"(\d+)\.", k))]
    return max(found) + 1 if found else 0


def released_config(state: Mapping[str, torch.Tensor], kind: Kind) -> dict[str, tuple[int, str]]:
    """What the file's shapes say: {setting: (value, the key it was read from)}; a setting whose key is
    absent is left out (the key is then reported missing)."""
    out: dict[str, tuple[int, str]] = {}
    conv = _shape(state, key := "clip.visual.conv1.weight")
    if conv and len(conv) == 4:
        out["vision.width"], out["vision.patch_size"] = (conv[0], key), (conv[-1], key)
    pos = _shape(state, key := "clip.visual.positional_embedding")
    if pos:
        out["vision.tokens_per_image"] = (pos[0], key)
        grid = math.isqrt(max(pos[0] - 1, 0))
        if conv and grid * grid == pos[0] - 1:
            out["vision.image_size"] = (grid * conv[-1], f"{key} and clip.visual.conv1.weight")
    if layers := _blocks(state, key := "clip.visual.transformer.resblocks."):
        out["vision.layers"] = (layers, key + "*")
    if (proj := _shape(state, key := "clip.visual.proj")) and len(proj) == 2:
        out["embed_dim"] = (proj[1], key)
    if (tokens := _shape(state, key := "clip.token_embedding.weight")) and len(tokens) == 2:
        out["text.vocab_size"], out["text.width"] = (tokens[0], key), (tokens[1], key)
    if positions := _shape(state, key := "clip.positional_embedding"):
        out["text.context_length"] = (positions[0], key)
    if kind == "adapt":
        if layers := _blocks(state, key := "clip.transformer.resblocks."):
            out["text.layers"] = (layers, key + "*")
        return out
    if layers := _blocks(state, key := "decoder.decoder.layer."):
        out["captioner.layers"] = (layers, key + "*")
    if layers := _blocks(state, key := "decoder.encoder.layer."):
        out["captioner.encoder_layers"] = (layers, key + "*")
    for key in sorted(state):
        if re.fullmatch(r"decoder\.(en|de)coder\.layer\.\d+\.intermediate\.dense\.weight", key) and _shape(state, key):
            out["captioner.ffn"] = (_shape(state, key)[0], key)
            break
    if hidden := _shape(state, key := "decoder.embeddings.LayerNorm.weight"):
        out["captioner.hidden"] = (hidden[0], key)
    if words := _shape(state, key := "decoder.classifier.cls.predictions.bias"):
        out["captioner.output_words"] = (words[0], key)
    return out


# open_clip options whose value changes the function without changing any shape: the authors' CLIP is
# OpenAI's, i.e. these defaults.
_VISION_AS_THEIRS = {"head_width": HEAD_WIDTH, "mlp_ratio": 4.0, "ls_init_value": None, "patch_dropout": 0.0,
                     "attentional_pool": False, "no_ln_pre": False, "pos_embed_type": "learnable",
                     "final_ln_after_pool": False, "pool_type": "tok", "act_kwargs": None, "norm_kwargs": None,
                     "block_type": None, "qk_norm": False, "scaled_cosine_attn": False, "scale_heads": False,
                     "scale_attn_inner": False, "scale_attn": False, "scale_fc": False, "timm_model_name": None}
_TEXT_AS_THEIRS = {"mlp_ratio": 4.0, "ls_init_value": None, "embed_cls": False, "no_causal_mask": False,
                   "final_ln_after_pool": False, "pool_type": "argmax", "proj_bias": False, "proj_type": "linear",
                   "act_kwargs": None, "norm_kwargs": None, "block_type": None, "qk_norm": False,
                   "scaled_cosine_attn": False, "scale_heads": False, "scale_attn_inner": False,
                   "scale_attn": False, "scale_fc": False, "hf_model_name": None}
_TOP_LEVEL = {"embed_dim", "quick_gelu", "vision_cfg", "text_cfg"}


def _profile_problems(found: dict[str, tuple[int, str]], model_cfg: ModelParams, kind: Kind) -> list[str]:
    """Where the profile's model contradicts the file's shapes or the authors' fixed architecture."""
    try:
        cfg = _model_config(model_cfg.arch)
    except ValueError as e:
        return [str(e)]
    problems = [f"arch {model_cfg.arch!r}: option {k!r}, which the authors' CLIP does not have"
                for k in sorted(set(cfg) - _TOP_LEVEL)]
    if not cfg.get("quick_gelu", False):
        problems.append(f"arch {model_cfg.arch!r} uses GELU; the authors' CLIP blocks use QuickGELU "
                        f"(use a -quickgelu architecture, e.g. 'ViT-B-32-quickgelu')")
    vision, text = CLIPVisionCfg(**cfg["vision_cfg"]), CLIPTextCfg(**cfg["text_cfg"])
    checks = [("vision", vision, _VISION_AS_THEIRS)] + ([("text", text, _TEXT_AS_THEIRS)] if kind == "adapt" else [])
    for tower, tower_cfg, theirs in checks:
        problems += [f"arch {model_cfg.arch!r}: {tower}_cfg.{k} = {getattr(tower_cfg, k)!r}, the authors' CLIP "
                     f"has {v!r}" for k, v in theirs.items() if getattr(tower_cfg, k) != v]
    if kind == "adapt" and text.heads * HEAD_WIDTH != text.width:
        problems.append(f"arch {model_cfg.arch!r}: text heads {text.heads}; the authors' CLIP has width / "
                        f"{HEAD_WIDTH} = {text.width / HEAD_WIDTH:g}")
    image = vision.image_size if isinstance(vision.image_size, int) else tuple(vision.image_size)
    if isinstance(image, tuple):
        if len(set(image)) != 1:
            problems.append(f"arch {model_cfg.arch!r}: non-square images {image}; the authors' CLIP is square")
        image = image[0]
    cap = model_cfg.captioner
    expected = {
        "vision.width": vision.width, "vision.patch_size": vision.patch_size, "vision.image_size": image,
        "vision.tokens_per_image": (image // vision.patch_size) ** 2 + 1, "vision.layers": vision.layers,
        "embed_dim": cfg["embed_dim"], "text.vocab_size": text.vocab_size, "text.width": text.width,
        "text.context_length": text.context_length, "text.layers": text.layers,
        "captioner.layers": cap.layers, "captioner.encoder_layers": cap.layers, "captioner.ffn": cap.ffn,
        # our captioner's hidden size is CLIP's text width (its word embedding is CLIP's token embedding)
        "captioner.hidden": text.width,
        # output_vocab "clip": every word of CLIP's vocabulary is scored, as in their LM head
        "captioner.output_words": text.vocab_size if model_cfg.output_vocab == "clip" else None,
    }
    for name, (value, key) in found.items():
        if expected[name] != value:
            want = ("the words of the training captions (output_vocab 'train')" if expected[name] is None
                    else expected[name])
            problems.append(f"{name}: {value} in the file ({key}), {want} in the profile (arch {model_cfg.arch!r})")
    # Not in the file: checked for consistency only (their values: AUTHORS_SETTINGS).
    layers = found.get("vision.layers", (vision.layers, ""))[0]
    if not 0 < model_cfg.intra_layers < layers:
        problems.append(f"intra_layers {model_cfg.intra_layers} of the profile: must be between 1 and "
                        f"{layers - 1} for the file's {layers} vision blocks")
    if kind == "finetune" and text.width % cap.heads:
        problems.append(f"captioner heads {cap.heads} of the profile do not divide the hidden size {text.width}")
    context = found.get("text.context_length", (text.context_length, ""))[0]
    if model_cfg.max_tokens > context:
        problems.append(f"max_tokens {model_cfg.max_tokens} of the profile exceeds the file's {context} positions")
    return problems


def config_problems(state: Mapping[str, torch.Tensor], model_cfg: ModelParams, kind: Kind) -> list[str]:
    """Where the profile contradicts the file's shapes or the authors' fixed architecture ([] when nowhere).
    Reads shapes only, so it also runs on meta tensors."""
    return _profile_problems(released_config(state, kind), model_cfg, kind)


# --- conversion ---------------------------------------------------------------------------------------------

def _kind_of(state: Mapping[str, torch.Tensor], kind: Kind | None, source: str) -> Kind:
    has_decoder = any(k.startswith("decoder.") for k in state)
    found: Kind = "finetune" if has_decoder else "adapt"
    if kind is not None and kind != found:
        raise CheckpointConversionError(
            f"{source}: asked for a {kind!r} conversion, but the file is the authors' "
            + ("trained captioner (it has decoder.* keys): convert it as 'finetune'" if has_decoder
               else "adaptation (retrieval) checkpoint (no decoder.* key): convert it as 'adapt'"))
    return found


def _target(model_cfg: ModelParams, kind: Kind) -> torch.nn.Module:
    """Our model of `kind`, built from the profile with random weights (every one is overwritten)."""
    with _weights_loaded_next():
        if kind == "adapt":
            return AdaptModel(create_clip(model_cfg.arch, None), model_cfg.intra_layers)
        return build_caption_model("no-adapt", model_cfg, None)   # the adapt variant's architecture


def _report(source: str, kind: Kind, sections: dict[str, list[str]]) -> CheckpointConversionError:
    total = sum(len(v) for v in sections.values())
    what = "trained captioner" if kind == "finetune" else "adaptation checkpoint"
    lines = [f"{source}: cannot convert the authors' {what} into this project's checkpoint ({total} problems)"]
    for title, items in sections.items():
        if items:
            lines.append(f"{title} ({len(items)}):")
            lines += [f"  - {item}" for item in items]
    return CheckpointConversionError("\n".join(lines))


def convert_released(state: Mapping[str, Any], model_cfg: ModelParams, kind: Kind | None = None, *,
                     source: str = "state dict", provenance: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The authors' state dict → our checkpoint: {"kind": "finetune", "variant": "adapt", ...} for a trained
    captioner (what the finetune stage saves, loaded by `load_caption_model`), {"kind": "adapt", ...} for an
    adaptation checkpoint (what the adapt stage saves). `kind` defaults to what the file holds.

    model_cfg: the profile's model section (the paper profile for the released files). Shapes the file has
    must agree with it; what the file cannot say (intra layers, heads, caption length) is taken from it.
    Raises CheckpointConversionError naming every offending key or setting.
    """
    kind = _kind_of(state, kind, source)
    not_tensors = sorted(f"{k!r}: {v.dtype if torch.is_tensor(v) else type(v).__name__}" for k, v in state.items()
                         if not isinstance(k, str) or not torch.is_tensor(v) or not v.is_floating_point())
    state = {k: v for k, v in state.items() if isinstance(k, str) and torch.is_tensor(v)}
    rules = _rules(kind)
    matched: dict[str, _Rule] = {}
    unknown, unconvertible, ignored = [], [], []
    for key in sorted(state):
        rule = next((r for r in rules if r.match(key) is not None), None)
        if rule is None:
            unknown.append(key)
        elif not rule.convertible:
            unconvertible.append(f"{key}: {rule.reason}")
        elif not rule.ours:
            ignored.append(key)
        else:
            matched[key] = rule
    found = released_config(state, kind)
    settings = _profile_problems(found, model_cfg, kind)
    sections = {"not a floating-point tensor": not_tensors,
                "unknown keys (no counterpart in the authors' modules as mapped here)": unknown,
                "keys whose function our model cannot compute": unconvertible,
                "settings: the file's shapes, or the authors' fixed architecture, against the profile": settings}
    if settings:
        # Against a contradicting profile every shape would differ too: report the settings, not each tensor.
        raise _report(source, kind, sections)

    model = _target(model_cfg, kind)
    ours = model.state_dict()
    fills: dict[str, list[str]] = {}
    beyond, missing, no_rule, shapes, ties = [], [], [], [], []
    for key, rule in matched.items():
        for target in rule.targets(key):
            if target in ours:
                fills.setdefault(target, []).append(key)
            else:
                beyond.append(f"{key} → {target}, which the profile's model does not have")
    for target in ours:
        sources = [s for r in rules if (s := r.source_for(target)) is not None]
        if not sources:
            no_rule.append(f"{target}: no key of the authors' layout fills it")
        missing += [f"{s} (fills our {target})" for s in sources if s not in state]
    for target, keys in fills.items():
        want = tuple(ours[target].shape)
        wrong = [f"{k}: {tuple(state[k].shape)} in the file, our {target} is {want}"
                 for k in keys if tuple(state[k].shape) != want]
        shapes += wrong
        first = state[keys[0]].float()
        if len(keys) > 1 and not wrong and any(not torch.equal(first, state[k].float()) for k in keys[1:]):
            ties.append(f"{', '.join(keys)}: one tied tensor in their model, different values in the file "
                        f"(our {target} is one tensor)")
    sections.update({"missing keys": sorted(set(missing)), "keys beyond the profile's model": beyond,
                     "shape mismatches": shapes, "tied tensors that differ": ties,
                     "our parameters with no source (a gap in the key map)": no_rule})
    if any(sections.values()):
        raise _report(source, kind, sections)

    model.load_state_dict({t: state[keys[0]].to(ours[t].dtype) for t, keys in fills.items()}, strict=True)
    checkpoint: dict[str, Any] = {"kind": kind}
    if kind == "finetune":
        checkpoint.update(variant="adapt", seed=None)
    checkpoint.update({
        "state_dict": model.state_dict(), "epoch": None, "model": model_cfg.model_dump(mode="json"),
        "source": {
            "origin": ORIGIN, **(provenance or {}),
            "from_shapes": {name: value for name, (value, _) in sorted(found.items())},
            "from_profile": {"intra_layers": model_cfg.intra_layers, "max_tokens": model_cfg.max_tokens,
                             "captioner.heads": model_cfg.captioner.heads,
                             "captioner.dropout": model_cfg.captioner.dropout},
            "ignored": ignored,
        },
    })
    return checkpoint


def load_released(path: str | Path) -> dict[str, torch.Tensor]:
    """The authors' file as a state dict, read as data only (`weights_only=True`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"expected the authors' checkpoint at {path} (README: ckpts/pretrained/ or "
                                f"ckpts/trained/pytorch_model.bin.<clevr|spot>), found nothing")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # not a torch file (corrupt, truncated), or a pickle holding more than tensors
        # Its first sentence only: torch's next ones advise weights_only=False, wrong for a file that is data.
        said = str(e).strip().split("\n", 1)[0].split(". ", 1)[0]
        raise CheckpointConversionError(f"{path} is not a plain state dict readable with weights_only=True "
                                        f"({type(e).__name__}: {said})") from e
    if not isinstance(state, Mapping):
        raise CheckpointConversionError(f"{path} holds a {type(state).__name__}, expected the authors' state dict")
    return dict(state)


def convert_released_path(path: str | Path, model_cfg: ModelParams, kind: Kind | None = None) -> dict[str, Any]:
    """`load_released` → `convert_released`, the file's name and sha256 recorded: our checkpoint, in memory."""
    path = Path(path)
    return convert_released(load_released(path), model_cfg, kind, source=str(path),
                            provenance={"file": path.name, "sha256": sha256_of(path)})


def convert_released_file(path: str | Path, out: str | Path, model_cfg: ModelParams,
                          kind: Kind | None = None) -> dict[str, Any]:
    """`convert_released_path` → our checkpoint at `out` (atomic); returns it."""
    checkpoint = convert_released_path(path, model_cfg, kind)
    save_checkpoint(out, checkpoint)
    return checkpoint
