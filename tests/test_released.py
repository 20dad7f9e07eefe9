"""Converting the authors' released checkpoints (models/released.py).

The authors' files cannot be downloaded here, so each test builds a state dict in their exact layout: the
key names and shapes their modules give (module_clip.CLIP with CLIP4IDC's VisualTransformer,
module_decoder.DecoderModel), at a reduced width, with their dtypes (their `convert_weights` stores CLIP's
Linear/Conv/attention weights and the projections in fp16) and their ties (one tensor under every name).
`their_*` below restate their modules and forward passes in our own words, independently of the
converter's key map, so that the converted model can be compared with what their model computes.
"""
from __future__ import annotations

import argparse
import json
import math
from collections import OrderedDict
from pathlib import Path

import open_clip
import pytest
import torch
import torch.nn.functional as F

from clip4idc import params
from clip4idc.errors import CheckpointConversionError
from clip4idc.generate import greedy_decode, greedy_ids
from clip4idc.models.build import build_caption_model, load_caption_model
from clip4idc.models.idc import AdaptModel
from clip4idc.models.released import (AUTHORS_SETTINGS, config_problems, convert_released,
                                      convert_released_file, load_released)
from clip4idc.runtime import load_checkpoint, save_checkpoint
from clip4idc.text import CaptionTokenizer

REPO = Path(__file__).resolve().parents[1]
ARCH = "released-test-quickgelu"
# A reduced CLIP with the authors' fixed choices: QuickGELU, heads = width / 64 in both towers.
ARCH_CFG = {"embed_dim": 64, "quick_gelu": True,
            "vision_cfg": {"image_size": 64, "layers": 3, "width": 128, "patch_size": 32},
            "text_cfg": {"context_length": 24, "vocab_size": 49408, "width": 64, "heads": 1, "layers": 2}}
CAPTIONER = {"heads": 2, "ffn": 96, "layers": 2}      # their decoder_config, reduced
INTRA = 2
VOCAB, CONTEXT = 49408, 24


@pytest.fixture(scope="module", autouse=True)
def test_arch(tmp_path_factory):
    path = tmp_path_factory.mktemp("arch") / f"{ARCH}.json"
    path.write_text(json.dumps(ARCH_CFG))
    open_clip.add_model_config(path)


def model_cfg(**captioner) -> params.ModelParams:
    paper = params.load(REPO / "params.yaml", "paper", "clevr_change").model
    return paper.model_copy(update={"arch": ARCH, "intra_layers": INTRA, "max_tokens": 16,
                                    "captioner": paper.captioner.model_copy(update={**CAPTIONER, **captioner})})


# --- the authors' layout (module_clip.py, module_decoder.py), restated ----------------------------------------

class Weights:
    """Deterministic values of a sensible scale: outputs depend on every weight, nothing saturates."""

    def __init__(self, seed: int = 0, device: str = "cpu"):
        self.g, self.device = torch.Generator().manual_seed(seed), device

    def __call__(self, *shape, scale: float | None = None, fp16: bool = False, around: float = 0.0):
        if self.device == "meta":
            return torch.empty(*shape, device="meta", dtype=torch.float16 if fp16 else torch.float32)
        scale = scale if scale is not None else (shape[-1] ** -0.5 if len(shape) > 1 else 0.1)
        t = around + scale * torch.randn(*shape, generator=self.g)
        return t.half() if fp16 else t


def their_clip_block(sd, prefix, d, w):
    """ResidualAttentionBlock: nn.MultiheadAttention (fused in_proj), ln_1, mlp (c_fc, QuickGELU, c_proj), ln_2;
    the Linear/attention weights fp16 after convert_weights."""
    sd[f"{prefix}attn.in_proj_weight"] = w(3 * d, d, fp16=True)
    sd[f"{prefix}attn.in_proj_bias"] = w(3 * d, fp16=True)
    sd[f"{prefix}attn.out_proj.weight"] = w(d, d, fp16=True)
    sd[f"{prefix}attn.out_proj.bias"] = w(d, fp16=True)
    sd[f"{prefix}ln_1.weight"], sd[f"{prefix}ln_1.bias"] = w(d, around=1.0), w(d)
    sd[f"{prefix}mlp.c_fc.weight"], sd[f"{prefix}mlp.c_fc.bias"] = w(4 * d, d, fp16=True), w(4 * d, fp16=True)
    sd[f"{prefix}mlp.c_proj.weight"], sd[f"{prefix}mlp.c_proj.bias"] = w(d, 4 * d, fp16=True), w(d, fp16=True)
    sd[f"{prefix}ln_2.weight"], sd[f"{prefix}ln_2.bias"] = w(d, around=1.0), w(d)


def their_clip(w, *, width, layers, patch, grid, embed, vocab, context, text_width, text_layers):
    """CLIP(...) of module_clip.py with CLIP4IDC's VisualTransformer, as `clip.*` of CLIP4IDC's state dict."""
    sd = OrderedDict()
    tokens = grid * grid + 1
    v = "clip.visual."
    sd[v + "class_embedding"] = w(width)
    sd[v + "positional_embedding"] = w(tokens, width, scale=0.1)
    sd[v + "proj"] = w(width, embed, fp16=True)
    sd[v + "joint_positional_embedding"] = w(2 * tokens, width, scale=0.1)
    sd[v + "bef_embedding"], sd[v + "aft_embedding"] = w(width), w(width)
    sd[v + "conv1.weight"] = w(width, 3, patch, patch, scale=(3 * patch * patch) ** -0.5, fp16=True)
    sd[v + "ln_pre.weight"], sd[v + "ln_pre.bias"] = w(width, around=1.0), w(width)
    sd[v + "ln_mid.weight"], sd[v + "ln_mid.bias"] = w(width, around=1.0), w(width)
    for i in range(layers):
        their_clip_block(sd, f"{v}transformer.resblocks.{i}.", width, w)
    sd[v + "ln_post.weight"], sd[v + "ln_post.bias"] = w(width, around=1.0), w(width)
    for i in range(text_layers):
        their_clip_block(sd, f"clip.transformer.resblocks.{i}.", text_width, w)
    sd["clip.positional_embedding"] = w(context, text_width, scale=0.1)
    sd["clip.text_projection"] = w(text_width, embed, fp16=True)
    sd["clip.logit_scale"] = torch.tensor(math.log(1 / 0.07), device=w.device)   # CLIP's init value
    sd["clip.token_embedding.weight"] = w(vocab, text_width, scale=0.1)
    sd["clip.ln_final.weight"], sd["clip.ln_final.bias"] = w(text_width, around=1.0), w(text_width)
    return sd


def their_bert_attention(sd, prefix, h, w):
    """DecoderAttention: MultiHeadAttention `att` (query, key, value) + BertSelfOutput `output` (dense, LayerNorm)."""
    for name in ("query", "key", "value"):
        sd[f"{prefix}att.{name}.weight"], sd[f"{prefix}att.{name}.bias"] = w(h, h), w(h)
    sd[f"{prefix}output.dense.weight"], sd[f"{prefix}output.dense.bias"] = w(h, h), w(h)
    sd[f"{prefix}output.LayerNorm.weight"], sd[f"{prefix}output.LayerNorm.bias"] = w(h, around=1.0), w(h)


def their_bert_ffn(sd, prefix, h, ffn, w):
    """BertIntermediate (dense) + BertOutput (dense, LayerNorm)."""
    sd[f"{prefix}intermediate.dense.weight"], sd[f"{prefix}intermediate.dense.bias"] = w(ffn, h), w(ffn)
    sd[f"{prefix}output.dense.weight"], sd[f"{prefix}output.dense.bias"] = w(h, ffn), w(h)
    sd[f"{prefix}output.LayerNorm.weight"], sd[f"{prefix}output.LayerNorm.bias"] = w(h, around=1.0), w(h)


def their_decoder(sd, w, *, hidden, ffn, layers):
    """DecoderModel(config, word_embeddings=clip.token_embedding.weight, position=clip.positional_embedding):
    attribute order embeddings, decoder, encoder, classifier; tied tensors are the same object."""
    words, positions = sd["clip.token_embedding.weight"], sd["clip.positional_embedding"]
    sd["decoder.embeddings.word_embeddings.weight"] = words
    sd["decoder.embeddings.position_embeddings.weight"] = positions
    sd["decoder.embeddings.LayerNorm.weight"] = w(hidden, around=1.0)
    sd["decoder.embeddings.LayerNorm.bias"] = w(hidden)
    for i in range(layers):
        their_bert_attention(sd, f"decoder.decoder.layer.{i}.slf_attn.", hidden, w)
        their_bert_attention(sd, f"decoder.decoder.layer.{i}.enc_attn.", hidden, w)
        their_bert_ffn(sd, f"decoder.decoder.layer.{i}.", hidden, ffn, w)
    for i in range(layers):
        their_bert_attention(sd, f"decoder.encoder.layer.{i}.slf_attn.", hidden, w)
        their_bert_ffn(sd, f"decoder.encoder.layer.{i}.", hidden, ffn, w)
    p = "decoder.classifier.cls.predictions."
    sd[p + "bias"] = w(words.shape[0])
    sd[p + "transform.dense.weight"], sd[p + "transform.dense.bias"] = w(hidden, hidden), w(hidden)
    sd[p + "transform.LayerNorm.weight"], sd[p + "transform.LayerNorm.bias"] = w(hidden, around=1.0), w(hidden)
    sd[p + "decoder.weight"] = words
    return sd


def authors_state(kind: str = "finetune", seed: int = 0) -> OrderedDict:
    w = Weights(seed)
    v, t = ARCH_CFG["vision_cfg"], ARCH_CFG["text_cfg"]
    sd = their_clip(w, width=v["width"], layers=v["layers"], patch=v["patch_size"],
                    grid=v["image_size"] // v["patch_size"], embed=ARCH_CFG["embed_dim"], vocab=VOCAB,
                    context=CONTEXT, text_width=t["width"], text_layers=t["layers"])
    if kind == "finetune":
        their_decoder(sd, w, hidden=t["width"], ffn=CAPTIONER["ffn"], layers=CAPTIONER["layers"])
    sd._metadata = OrderedDict({"": {"version": 1}})   # as nn.Module.state_dict() leaves it
    return sd


# --- their forward, restated ----------------------------------------------------------------------------------

def _f(sd, key):
    return sd[key].float()


def _linear(sd, x, prefix):
    return F.linear(x, _f(sd, prefix + "weight"), _f(sd, prefix + "bias"))


def their_clip_ln(sd, x, prefix):
    return F.layer_norm(x, x.shape[-1:], _f(sd, prefix + "weight"), _f(sd, prefix + "bias"), 1e-5)


def their_bert_ln(sd, x, prefix):
    """until_module.LayerNorm: TF style, epsilon 1e-12 inside the square root."""
    mean = x.mean(-1, keepdim=True)
    var = (x - mean).pow(2).mean(-1, keepdim=True)
    return _f(sd, prefix + "weight") * (x - mean) / torch.sqrt(var + 1e-12) + _f(sd, prefix + "bias")


def _heads(x, n):  # [B, L, H] → [B, n, L, H/n]
    return x.view(x.shape[0], x.shape[1], n, -1).permute(0, 2, 1, 3)


def _attend(q, k, v, n, additive_mask):
    q, k, v = _heads(q, n), _heads(k, n), _heads(v, n)
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]) + additive_mask
    out = scores.softmax(-1) @ v
    return out.permute(0, 2, 1, 3).reshape(out.shape[0], out.shape[2], -1)


def their_clip_block_forward(sd, x, prefix, mask):
    """Pre-LN: x + attn(ln_1(x)), x + mlp(ln_2(x)); heads = width // 64; QuickGELU."""
    d = x.shape[-1]
    h = their_clip_ln(sd, x, prefix + "ln_1.")
    q, k, v = F.linear(h, _f(sd, prefix + "attn.in_proj_weight"), _f(sd, prefix + "attn.in_proj_bias")).split(d, -1)
    attn = _attend(q, k, v, d // 64, mask)
    x = x + _linear(sd, attn, prefix + "attn.out_proj.")
    h = _linear(sd, their_clip_ln(sd, x, prefix + "ln_2."), prefix + "mlp.c_fc.")
    h = h * torch.sigmoid(1.702 * h)
    return x + _linear(sd, h, prefix + "mlp.c_proj.")


def their_visual_tokens(sd, before, after, intra):
    """VisualTransformer.forward + encode_image's ln_post/proj on every token: the pair's [B, 2T, embed]."""
    v = "clip.visual."
    b = before.shape[0]
    images = torch.stack([before, after], 1).flatten(0, 1)          # [b*2, 3, H, W], bef/aft interleaved
    patch = sd[v + "conv1.weight"].shape[-1]
    x = F.conv2d(images, _f(sd, v + "conv1.weight"), stride=patch).flatten(2).transpose(1, 2)
    x = torch.cat([_f(sd, v + "class_embedding").expand(x.shape[0], 1, -1), x], 1) + _f(sd, v + "positional_embedding")
    x = their_clip_ln(sd, x, v + "ln_pre.")
    layers = 1 + max(int(k.split(".")[4]) for k in sd if k.startswith(v + "transformer.resblocks."))
    for i in range(intra):
        x = their_clip_block_forward(sd, x, f"{v}transformer.resblocks.{i}.", 0.0)
    x = x.view(b, 2, x.shape[1], x.shape[2])
    x = torch.cat([x[:, 0] + _f(sd, v + "bef_embedding"), x[:, 1] + _f(sd, v + "aft_embedding")], 1)
    x = their_clip_ln(sd, x + _f(sd, v + "joint_positional_embedding"), v + "ln_mid.")
    for i in range(intra, layers):
        x = their_clip_block_forward(sd, x, f"{v}transformer.resblocks.{i}.", 0.0)
    return their_clip_ln(sd, x, v + "ln_post.") @ _f(sd, v + "proj")


def their_text_feature(sd, ids):
    """CLIP.encode_text: causal text transformer, ln_final, text_projection, the feature at the argmax id."""
    x = _f(sd, "clip.token_embedding.weight")[ids] + _f(sd, "clip.positional_embedding")[:ids.shape[1]]
    causal = torch.full((ids.shape[1], ids.shape[1]), float("-inf")).triu(1)
    layers = 1 + max(int(k.split(".")[3]) for k in sd if k.startswith("clip.transformer.resblocks."))
    for i in range(layers):
        x = their_clip_block_forward(sd, x, f"clip.transformer.resblocks.{i}.", causal)
    x = their_clip_ln(sd, x, "clip.ln_final.") @ _f(sd, "clip.text_projection")
    return x[torch.arange(ids.shape[0]), ids.argmax(-1)]


def their_bert_attention_forward(sd, prefix, q_in, kv_in, heads, mask):
    a = prefix + "att."
    q, k, v = (_linear(sd, x, f"{a}{n}.") for x, n in ((q_in, "query"), (kv_in, "key"), (kv_in, "value")))
    h = _linear(sd, _attend(q, k, v, heads, mask), prefix + "output.dense.")
    return their_bert_ln(sd, h + q_in, prefix + "output.LayerNorm.")


def their_bert_ffn_forward(sd, prefix, x):
    h = _linear(sd, x, prefix + "intermediate.dense.")
    h = h * 0.5 * (1.0 + torch.erf(h / math.sqrt(2.0)))
    h = _linear(sd, h, prefix + "output.dense.")
    return their_bert_ln(sd, h + x, prefix + "output.LayerNorm.")


def their_decoder_logits(sd, visual, ids, heads):
    """DecoderModel.forward at eval: encoder over the visual tokens (mask all ones → adds 0), decoder layer i
    over encoder layer i's output, causal self-attention as an additive -10000 mask, the tied LM head."""
    layers = 1 + max(int(k.split(".")[3]) for k in sd if k.startswith("decoder.decoder.layer."))
    length = ids.shape[1]
    e = "decoder.embeddings."
    x = _f(sd, e + "word_embeddings.weight")[ids] + _f(sd, e + "position_embeddings.weight")[:length]
    x = their_bert_ln(sd, x, "decoder.embeddings.LayerNorm.")
    self_mask = torch.ones(length, length).triu(1) * -10000.0
    memories, m = [], visual
    for i in range(layers):
        p = f"decoder.encoder.layer.{i}."
        m = their_bert_ffn_forward(sd, p, their_bert_attention_forward(sd, p + "slf_attn.", m, m, heads, 0.0))
        memories.append(m)
    for i in range(layers):
        p = f"decoder.decoder.layer.{i}."
        x = their_bert_attention_forward(sd, p + "slf_attn.", x, x, heads, self_mask)
        x = their_bert_attention_forward(sd, p + "enc_attn.", x, memories[i], heads, 0.0)
        x = their_bert_ffn_forward(sd, p, x)
    p = "decoder.classifier.cls.predictions."
    h = _linear(sd, x, p + "transform.dense.")
    h = their_bert_ln(sd, h * 0.5 * (1.0 + torch.erf(h / math.sqrt(2.0))), p + "transform.LayerNorm.")
    return h @ _f(sd, p + "decoder.weight").T + _f(sd, p + "bias")


def their_greedy(sd, visual, sot, steps, heads):
    """main_task_caption.greedy_decode: the whole prefix fed again at every step, argmax of the last position."""
    ids = torch.full((visual.shape[0], 1), sot, dtype=torch.long)
    for _ in range(steps):
        ids = torch.cat([ids, their_decoder_logits(sd, visual, ids, heads)[:, -1].argmax(-1, keepdim=True)], 1)
    return ids[:, 1:]


def pair_images(n=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    size = ARCH_CFG["vision_cfg"]["image_size"]
    return torch.randn(n, 3, size, size, generator=g), torch.randn(n, 3, size, size, generator=g)


# --- tests ------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """The authors' trained-captioner file (torch.save of their state dict) → our finetune checkpoint file."""
    root = tmp_path_factory.mktemp("released")
    state = authors_state("finetune")
    torch.save(state, root / "pytorch_model.bin.clevr")
    ckpt = convert_released_file(root / "pytorch_model.bin.clevr", root / "model.pt", model_cfg())
    return state, ckpt, root / "model.pt"


def test_trained_captioner_converts_loads_and_decodes(converted):
    state, ckpt, path = converted
    saved = load_checkpoint(path)                         # weights_only=True, as decode reads it
    assert saved["kind"] == "finetune" and saved["variant"] == "adapt"
    assert saved["model"] == model_cfg().model_dump(mode="json")
    assert saved["source"]["from_shapes"]["captioner.ffn"] == CAPTIONER["ffn"]
    assert saved["source"]["from_shapes"]["vision.layers"] == ARCH_CFG["vision_cfg"]["layers"]
    assert saved["source"]["from_shapes"]["captioner.output_words"] == VOCAB     # output_vocab "clip"
    # Ignored: exactly CLIP's text tower beyond its embeddings (the embeddings are the captioner's).
    assert set(saved["source"]["ignored"]) == {k for k in state if k.startswith("clip.") and not k.startswith(
        ("clip.visual.", "clip.token_embedding.", "clip.positional_embedding"))}
    assert len(saved["source"]["sha256"]) == 64
    model, meta = load_caption_model(path)
    assert meta["kind"] == "finetune"
    tokenizer = CaptionTokenizer(meta["model"]["arch"], meta["model"]["max_tokens"])
    before, after = pair_images()
    captions = greedy_decode(model, before, after, tokenizer, max_len=8)
    assert len(captions) == 2 and all(isinstance(c, str) for c in captions)


def test_converted_weights_are_theirs_under_our_names(converted):
    state, _, path = converted
    sd = load_checkpoint(path)["state_dict"]
    assert all(t.dtype == torch.float32 for t in sd.values())
    # Spot checks across the map (fp16 sources become fp32 of the same values).
    same = {
        "clip.visual.transformer.resblocks.1.attn.in_proj_weight":
            "pair_encoder.visual.transformer.resblocks.1.attn.in_proj_weight",
        "clip.visual.bef_embedding": "pair_encoder.before_embedding",
        "clip.visual.aft_embedding": "pair_encoder.after_embedding",
        "decoder.encoder.layer.1.slf_attn.output.dense.weight": "captioner.encoder.1.attn.out.weight",
        "decoder.decoder.layer.0.enc_attn.att.key.bias": "captioner.decoder.0.cross_attn.key.bias",
        "decoder.decoder.layer.1.output.LayerNorm.weight": "captioner.decoder.1.ln_ffn.weight",
        "decoder.classifier.cls.predictions.bias": "captioner.head.bias",
        "decoder.embeddings.position_embeddings.weight": "captioner.positional_embedding",
    }
    for theirs, ours in same.items():
        assert torch.equal(sd[ours], state[theirs].float()), (theirs, ours)


def test_converted_model_computes_their_captioner_logits(converted):
    state, _, path = converted
    model, _ = load_caption_model(path)
    before, after = pair_images()
    ids = torch.tensor([[49406, 320, 1746, 2368, 533, 3140, 269], [49406, 518, 6082, 4260, 1253, 786, 269]])
    with torch.no_grad():
        ours_visual = model.pair_encoder(before, after)
        theirs_visual = their_visual_tokens(state, before, after, INTRA)
        torch.testing.assert_close(ours_visual, theirs_visual, atol=1e-5, rtol=0)
        ours = model(before, after, ids)
        theirs = their_decoder_logits(state, theirs_visual, ids, CAPTIONER["heads"])
    assert theirs.abs().max() > 1.0            # not a degenerate comparison
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
    # Greedy decoding picks their tokens (theirs refeeds the prefix; ours caches, stops at <end>).
    steps = 6
    tokenizer = CaptionTokenizer(ARCH, 16)
    ours_ids = greedy_ids(model, before, after, sot_id=tokenizer.sot_id, eot_id=tokenizer.eot_id, max_len=steps)
    theirs_ids = their_greedy(state, theirs_visual, tokenizer.sot_id, steps, CAPTIONER["heads"])
    for o, t in zip(ours_ids.tolist(), theirs_ids.tolist()):
        end = t.index(tokenizer.eot_id) + 1 if tokenizer.eot_id in t else steps
        assert o[:end] == t[:end]


def test_adaptation_checkpoint_converts_and_computes_their_features(tmp_path):
    state = authors_state("adapt", seed=3)
    torch.save(state, tmp_path / "pytorch_model.bin.spot")
    ckpt = convert_released_file(tmp_path / "pytorch_model.bin.spot", tmp_path / "adapt.pt", model_cfg())
    assert ckpt["kind"] == "adapt" and ckpt["source"]["ignored"] == []
    saved = load_checkpoint(tmp_path / "adapt.pt")
    adapted = AdaptModel(open_clip.create_model(ARCH), INTRA)
    adapted.load_state_dict(saved["state_dict"])              # strict: every key of the adapt stage's format
    adapted.eval()
    before, after = pair_images(seed=4)
    ids = torch.tensor([[49406, 320, 1746, 2368, 269, 49407, 0], [49406, 518, 6082, 49407, 0, 0, 0]])
    tokens = 1 + (ARCH_CFG["vision_cfg"]["image_size"] // ARCH_CFG["vision_cfg"]["patch_size"]) ** 2
    with torch.no_grad():
        theirs_tokens = their_visual_tokens(state, before, after, INTRA)
        # encode_image: mean of the two CLS outputs (they hard-code 50, the B/32 value; here `tokens`)
        theirs_pair = (theirs_tokens[:, 0] + theirs_tokens[:, tokens]) / 2
        torch.testing.assert_close(adapted.encode_pair(before, after), theirs_pair, atol=1e-5, rtol=0)
        torch.testing.assert_close(adapted.encode_text(ids), their_text_feature(state, ids), atol=1e-5, rtol=0)
    assert adapted.clip.logit_scale.item() == pytest.approx(state["clip.logit_scale"].item())
    # Fine-tuning's `adapt` variant starts from it as from the adapt stage's own checkpoint.
    model = build_caption_model("adapt", model_cfg(), None, tmp_path / "adapt.pt")
    assert torch.equal(model.pair_encoder.before_embedding, state["clip.visual.bef_embedding"])


def test_missing_and_stray_keys_are_each_named():
    state = authors_state()
    gone = ["decoder.decoder.layer.1.enc_attn.att.key.bias", "clip.visual.ln_mid.weight"]
    for key in gone:
        del state[key]
    state["decoder.pooler.dense.weight"] = torch.zeros(4, 4)
    state["clip.visual.transformer.resblocks.0.attn.bias_k"] = torch.zeros(1, 1, 128)
    with pytest.raises(CheckpointConversionError) as err:
        convert_released(state, model_cfg())
    message = str(err.value)
    assert "decoder.pooler.dense.weight" in message and "clip.visual.transformer.resblocks.0.attn.bias_k" in message
    assert ("decoder.decoder.layer.1.enc_attn.att.key.bias (fills our captioner.decoder.1.cross_attn.key.bias)"
            in message)
    assert "clip.visual.ln_mid.weight (fills our pair_encoder.ln_mid.weight)" in message
    assert "(4 problems)" in message


def test_shape_mismatch_names_the_key_and_both_shapes():
    state = authors_state()
    state["decoder.encoder.layer.0.slf_attn.output.dense.weight"] = torch.zeros(64, 65)
    state["clip.visual.transformer.resblocks.2.mlp.c_fc.bias"] = torch.zeros(500, dtype=torch.float16)
    with pytest.raises(CheckpointConversionError) as err:
        convert_released(state, model_cfg())
    message = str(err.value)
    assert ("decoder.encoder.layer.0.slf_attn.output.dense.weight: (64, 65) in the file, "
            "our captioner.encoder.0.attn.out.weight is (64, 64)") in message
    assert ("clip.visual.transformer.resblocks.2.mlp.c_fc.bias: (500,) in the file, "
            "our pair_encoder.visual.transformer.resblocks.2.mlp.c_fc.bias is (512,)") in message


def test_untied_copies_of_a_tied_tensor_are_refused():
    state = authors_state()
    state["decoder.classifier.cls.predictions.decoder.weight"] = state["clip.token_embedding.weight"] + 1e-3
    with pytest.raises(CheckpointConversionError, match="tied tensor") as err:
        convert_released(state, model_cfg())
    assert "decoder.classifier.cls.predictions.decoder.weight" in str(err.value)


def test_settings_come_from_the_shapes_and_must_match_the_profile():
    state = authors_state()
    with pytest.raises(CheckpointConversionError) as err:
        convert_released(state, model_cfg(layers=3, ffn=2048))
    message = str(err.value)
    assert "captioner.layers: 2 in the file (decoder.decoder.layer.*), 3 in the profile" in message
    assert "captioner.ffn: 96 in the file" in message and "2048 in the profile" in message
    gelu = model_cfg().model_copy(update={"arch": "clip4idc-tiny"})
    with pytest.raises(CheckpointConversionError, match="QuickGELU") as err:
        convert_released(state, gelu)
    assert "vision.width: 128 in the file (clip.visual.conv1.weight), 256 in the profile" in str(err.value)
    compact = model_cfg().model_copy(update={"output_vocab": "train"})
    with pytest.raises(CheckpointConversionError, match="captioner.output_words: 49408 in the file"):
        convert_released(state, compact)


def test_unconvertible_and_wrong_kind_are_refused(tmp_path):
    state = authors_state()
    state["clip.visual.conv2.weight"] = torch.zeros(128, 3, 3, 32, 32)
    with pytest.raises(CheckpointConversionError, match=r"clip.visual.conv2.weight: their --linear_patch 3d"):
        convert_released(state, model_cfg())
    with pytest.raises(CheckpointConversionError, match="trained captioner .* convert it as 'finetune'"):
        convert_released(authors_state(), model_cfg(), kind="adapt")
    torch.save({"state_dict": authors_state(), "args": argparse.Namespace(lr=1e-4)}, tmp_path / "pickled.bin")
    with pytest.raises(CheckpointConversionError, match="weights_only=True"):
        load_released(tmp_path / "pickled.bin")


def test_paper_profile_is_the_authors_released_model():
    """At full scale (meta tensors: shapes only): the ViT-B/32 file of their code agrees with the paper
    profile in every setting its shapes give, and the profile holds the authors' unrecorded settings."""
    paper = params.load(REPO / "params.yaml", "paper", "clevr_change").model
    assert (paper.intra_layers, paper.max_tokens, paper.captioner.heads, paper.captioner.dropout) == tuple(
        AUTHORS_SETTINGS[k] for k in ("intra_layers", "max_tokens", "captioner.heads", "captioner.dropout"))
    assert paper.arch == "ViT-B-32-quickgelu" and paper.output_vocab == "clip"
    w = Weights(device="meta")
    state = their_clip(w, width=768, layers=12, patch=32, grid=7, embed=512, vocab=49408, context=77,
                       text_width=512, text_layers=12)
    assert config_problems(state, paper, "adapt") == []
    their_decoder(state, w, hidden=512, ffn=2048, layers=3)       # modules/decoder-base/decoder_config.json
    assert config_problems(state, paper, "finetune") == []
    assert any("captioner.layers: 3 in the file" in p for p in config_problems(
        state, paper.model_copy(update={"captioner": paper.captioner.model_copy(update={"layers": 2})}), "finetune"))


def test_saved_file_round_trips_through_weights_only(tmp_path):
    """Their files are plain state dicts (an OrderedDict with _metadata): weights_only=True reads them."""
    state = authors_state("adapt")
    save_checkpoint(tmp_path / "f.bin", state)
    loaded = load_released(tmp_path / "f.bin")
    assert loaded.keys() == state.keys() and loaded["clip.visual.proj"].dtype == torch.float16
