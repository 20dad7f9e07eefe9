"""The models at the paper's scale: ViT-B/32 (open_clip `ViT-B-32-quickgelu`, random weights) with the
paper profile's model values from params.yaml (PAPER.md sections 2 and 4).

tests/test_models.py checks behaviour on the tiny architecture; this file checks what only shows at
full size: exact parameter counts against formulas written from the published dimensions, and the
pair encoder's forward against the ViT run block by block by hand with 9 intra / 3 inter layers and
50 (B/32) or 197 (B/16) tokens per image.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from clip4idc import params
from clip4idc.models import AdaptModel, CaptionModel, PairEncoder, create_clip

PARAMS_YAML = Path(__file__).resolve().parents[1] / "params.yaml"

# Published dimensions of OpenAI's CLIP ViT-B/32 (Radford et al. 2021, table 20) and its text tower.
WIDTH, LAYERS, PATCH, IMAGE = 768, 12, 32, 224
TOKENS = (IMAGE // PATCH) ** 2 + 1          # 7×7 patches + CLS = 50
EMBED = 512                                 # joint embedding (vision proj output, text projection)
TEXT_WIDTH, TEXT_LAYERS, VOCAB, CONTEXT = 512, 12, 49408, 77
OPENAI_B32_PARAMS = 151_277_313             # OpenAI's count for ViT-B/32


# --- formulas -----------------------------------------------------------------------------------

def layer_norm(d: int) -> int:
    return 2 * d                            # weight + bias


def linear(d_in: int, d_out: int, bias: bool = True) -> int:
    return d_in * d_out + (d_out if bias else 0)


def clip_block(d: int) -> int:
    """open_clip ResidualAttentionBlock: ln_1, fused qkv in_proj, out_proj, ln_2, MLP d→4d→d."""
    return (layer_norm(d) + linear(d, 3 * d) + linear(d, d) + layer_norm(d)
            + linear(d, 4 * d) + linear(4 * d, d))  # = 12d² + 13d


def clip_vision(width=WIDTH, layers=LAYERS, patch=PATCH, tokens=TOKENS, embed=EMBED) -> int:
    return (linear(3 * patch * patch, width, bias=False)  # conv1 (patch embedding, no bias)
            + width                                       # class_embedding
            + tokens * width                              # positional_embedding
            + layer_norm(width)                           # ln_pre
            + layers * clip_block(width)
            + layer_norm(width)                           # ln_post
            + width * embed)                              # proj (no bias)


def clip_text() -> int:
    return (VOCAB * TEXT_WIDTH + CONTEXT * TEXT_WIDTH     # token_embedding, positional_embedding
            + TEXT_LAYERS * clip_block(TEXT_WIDTH)
            + layer_norm(TEXT_WIDTH)                      # ln_final
            + TEXT_WIDTH * EMBED                          # text_projection (no bias)
            + 1)                                          # logit_scale


def pair_new(width=WIDTH, tokens=TOKENS) -> int:
    """before + after vectors, joint positional embedding (2T × width), ln_mid."""
    return width + width + 2 * tokens * width + layer_norm(width)


def attention(h: int) -> int:
    return 4 * linear(h, h)                 # query, key, value, out (each with bias)


def ffn(h: int, f: int) -> int:
    return linear(h, f) + linear(f, h)


def encoder_layer(h: int, f: int) -> int:
    return attention(h) + layer_norm(h) + ffn(h, f) + layer_norm(h)


def decoder_layer(h: int, f: int) -> int:
    return (attention(h) + layer_norm(h)    # causal self-attention, ln_self
            + attention(h) + layer_norm(h)  # cross-attention, ln_cross
            + ffn(h, f) + layer_norm(h))    # FFN, ln_ffn


def lm_head(h: int) -> int:
    """dense → GELU → LayerNorm → (tied word embedding, not counted here) + vocab-sized bias."""
    return linear(h, h) + layer_norm(h) + VOCAB


def tied_text_embeddings() -> int:
    return VOCAB * TEXT_WIDTH + CONTEXT * TEXT_WIDTH


def count(named) -> int:
    return sum(p.numel() for _, p in named)


def count_by_part(model, parts: dict[str, tuple[str, ...]]) -> dict[str, int]:
    """Parameter count per part; a part is a tuple of name prefixes. Each name must fall in one part."""
    got = {k: 0 for k in parts}
    for name, p in model.named_parameters():  # de-duplicated: a shared tensor is listed once
        owners = [k for k, prefixes in parts.items() if name.startswith(prefixes)]
        assert len(owners) == 1, f"{name} belongs to {owners or 'no part'}"
        got[owners[0]] += p.numel()
    return got


# --- fixtures -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def paper():
    return params.load(PARAMS_YAML, "paper").model


@pytest.fixture(scope="module")
def clip(paper):
    assert paper.arch == "ViT-B-32-quickgelu"
    torch.manual_seed(0)
    return create_clip(paper.arch, None).eval()


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(1)
    return torch.randn(1, 3, IMAGE, IMAGE, generator=g), torch.randn(1, 3, IMAGE, IMAGE, generator=g)


def caption_model(clip, paper, joint: bool) -> CaptionModel:
    c = paper.captioner
    return CaptionModel.from_clip(clip, intra_layers=paper.intra_layers, joint=joint, heads=c.heads,
                                  ffn=c.ffn, layers=c.layers, dropout=c.dropout).eval()


def test_paper_profile_values(paper):
    assert (paper.intra_layers, paper.max_tokens) == (9, 32)
    c = paper.captioner
    assert (c.heads, c.ffn, c.layers, c.dropout) == (8, 2048, 3, 0.1)


# --- parameter counts ---------------------------------------------------------------------------

def test_formula_reproduces_openai_count():
    # Sanity of the formulas themselves: 87,849,216 (vision) + 63,428,097 (text) = 151,277,313.
    assert clip_vision() == 87_849_216
    assert clip_text() == 63_428_097
    assert clip_vision() + clip_text() == OPENAI_B32_PARAMS


def test_clip_b32_parameter_count(clip):
    parts = count_by_part(clip, {"vision": ("visual.",),
                                 "text": ("token_embedding.", "positional_embedding", "transformer.",
                                          "ln_final.", "text_projection", "logit_scale")})
    assert parts == {"vision": clip_vision(), "text": clip_text()}
    assert count(clip.named_parameters()) == OPENAI_B32_PARAMS


def test_adapt_model_parameter_count(clip, paper):
    model = AdaptModel(clip, paper.intra_layers)
    # pair_new = 768 + 768 + 100·768 + 2·768 = 79,872 → 151,357,185
    parts = count_by_part(model, {"clip": ("clip.",), "pair": ("pair_encoder.",)})
    assert parts == {"clip": OPENAI_B32_PARAMS, "pair": pair_new()}
    assert count(model.named_parameters()) == OPENAI_B32_PARAMS + pair_new() == 151_357_185
    # The vision tower is reachable twice (clip.visual, pair_encoder.visual) and counted once.
    assert count(model.named_parameters(remove_duplicate=False)) == 151_357_185 + clip_vision()


@pytest.mark.parametrize("joint", [True, False], ids=["clip4idc", "clip-ft"])
def test_caption_model_parameter_count(clip, paper, joint):
    model = caption_model(clip, paper, joint)
    h, f, n = TEXT_WIDTH, paper.captioner.ffn, paper.captioner.layers
    # encoder layer 3,152,384; decoder layer 4,204,032; ln_embed 1,024; LM head 313,088
    # → new captioner 22,383,360; tied embeddings 25,296,896 + 39,424 = 25,336,320.
    expected = {
        "vision": clip_vision(),
        "pair": pair_new() if joint else 0,
        "tied": tied_text_embeddings(),
        "ln_embed": layer_norm(h),
        "encoder": n * encoder_layer(h, f),
        "decoder": n * decoder_layer(h, f),
        "head": lm_head(h),
    }
    parts = count_by_part(model, {
        "vision": ("pair_encoder.visual.",),
        "pair": ("pair_encoder.before_embedding", "pair_encoder.after_embedding",
                 "pair_encoder.joint_positional_embedding", "pair_encoder.ln_mid."),
        "tied": ("captioner.token_embedding.", "captioner.positional_embedding"),
        "ln_embed": ("captioner.ln_embed.",),
        "encoder": ("captioner.encoder.",),
        "decoder": ("captioner.decoder.",),
        "head": ("captioner.head.",),
    })
    assert parts == expected
    total = sum(expected.values())
    assert total == (135_648_768 if joint else 135_568_896)
    assert count(model.named_parameters()) == total
    # Tied to CLIP: the same tensors, and the LM head has no output matrix of its own.
    assert model.captioner.token_embedding.weight is clip.token_embedding.weight
    assert model.captioner.positional_embedding is clip.positional_embedding
    assert {n for n, _ in model.captioner.head.named_parameters()} == {
        "dense.weight", "dense.bias", "ln.weight", "ln.bias", "bias"}


# --- forward equals the ViT run by hand ---------------------------------------------------------

def run_blocks(visual, x, blocks):
    if not visual.transformer.batch_first:  # [N, L, D] in and out, whatever open_clip's layout
        x = x.transpose(0, 1)
    for blk in blocks:
        x = blk(x)
    return x.transpose(0, 1) if not visual.transformer.batch_first else x


def hand_pair_tokens(visual, pe: PairEncoder, k: int, before, after):
    """PAPER.md §2 steps 1-6, written out with open_clip's submodules and the pair parameters."""
    width = visual.positional_embedding.shape[1]

    def stem_and_intra(img):
        x = visual.conv1(img)                                      # [B, W, g, g]
        x = x.reshape(x.shape[0], width, -1).permute(0, 2, 1)      # [B, g², W]
        cls = visual.class_embedding.expand(x.shape[0], 1, width)
        x = torch.cat([cls, x], dim=1) + visual.positional_embedding
        x = visual.ln_pre(x)
        return run_blocks(visual, x, visual.transformer.resblocks[:k])  # intra: each image alone

    x = torch.cat([stem_and_intra(before) + pe.before_embedding,
                   stem_and_intra(after) + pe.after_embedding], dim=1)
    x = x + pe.joint_positional_embedding
    x = F.layer_norm(x, (width,), pe.ln_mid.weight, pe.ln_mid.bias, eps=visual.ln_post.eps)
    x = run_blocks(visual, x, visual.transformer.resblocks[k:])      # inter: the joint sequence
    return visual.ln_post(x) @ visual.proj


def randomise_new_parameters(pe: PairEncoder):
    # ln_mid starts at 1/0; make every new parameter non-trivial so that dropping any one shows.
    with torch.no_grad():
        pe.ln_mid.weight.copy_(1 + 0.5 * torch.randn_like(pe.ln_mid.weight))
        pe.ln_mid.bias.copy_(0.5 * torch.randn_like(pe.ln_mid.bias))
        pe.before_embedding.add_(torch.randn_like(pe.before_embedding))
        pe.after_embedding.add_(torch.randn_like(pe.after_embedding))


def test_b32_forward_equals_hand_computation(clip, paper, images):
    torch.manual_seed(2)
    k = paper.intra_layers
    model = AdaptModel(clip, k)
    pe = model.pair_encoder
    randomise_new_parameters(pe)
    before, after = images
    assert pe.tokens_per_image == TOKENS == 50
    assert pe.joint_positional_embedding.shape == (2 * TOKENS, WIDTH)
    assert len(clip.visual.transformer.resblocks[k:]) == 3
    with torch.no_grad():
        expected = hand_pair_tokens(clip.visual, pe, k, before, after)
        tokens = pe(before, after)
        assert tokens.shape == (1, 2 * TOKENS, EMBED)
        torch.testing.assert_close(tokens, expected, rtol=1e-5, atol=1e-5)
        # Pair vector: mean of the before CLS (0) and the after CLS (50) outputs.
        torch.testing.assert_close(model.encode_pair(before, after), (expected[:, 0] + expected[:, 50]) / 2,
                                   rtol=1e-5, atol=1e-5)
        # The split matters: another intra/inter split (or no pair parameters) gives other tokens.
        assert not torch.allclose(hand_pair_tokens(clip.visual, pe, k - 1, before, after), expected, atol=1e-3)


def test_b16_uses_197_tokens_per_image():
    arch = "ViT-B-16-quickgelu"
    import open_clip
    if arch not in open_clip.list_models():
        pytest.skip(f"{arch} is not an open_clip architecture in this version")
    torch.manual_seed(5)
    visual = create_clip(arch, None).visual.eval()
    k, tokens_per_image = 9, (224 // 16) ** 2 + 1
    pe = PairEncoder(visual, k)
    randomise_new_parameters(pe)
    assert pe.tokens_per_image == tokens_per_image == 197
    assert pe.joint_positional_embedding.shape == (394, WIDTH)
    g = torch.Generator().manual_seed(6)
    before, after = torch.randn(1, 3, 224, 224, generator=g), torch.randn(1, 3, 224, 224, generator=g)
    with torch.no_grad():
        expected = hand_pair_tokens(visual, pe, k, before, after)
        tokens = pe(before, after)
        assert tokens.shape == (1, 394, EMBED)
        torch.testing.assert_close(tokens, expected, rtol=1e-5, atol=1e-5)
        pair = pe.pair_vector(tokens)
        torch.testing.assert_close(pair, (expected[:, 0] + expected[:, 197]) / 2, rtol=1e-5, atol=1e-5)
        assert not torch.allclose(pair, (expected[:, 0] + expected[:, 50]) / 2, atol=1e-3)  # not B/32's 50


def test_caption_model_paper_shapes_and_layerwise_memories(clip, paper, images):
    model = caption_model(clip, paper, joint=True)
    cap = model.captioner
    assert all(layer.self_attn.heads == layer.cross_attn.heads == 8 for layer in cap.decoder)
    encoded, consumed = {}, {}
    for i, layer in enumerate(cap.encoder):
        layer.register_forward_hook(lambda m, args, out, i=i: encoded.__setitem__(i, out))
    for i, layer in enumerate(cap.decoder):
        layer.cross_attn.register_forward_pre_hook(lambda m, args, i=i: consumed.__setitem__(i, args[1]))
    ids = torch.randint(0, VOCAB, (1, paper.max_tokens))
    with torch.no_grad():
        logits = model(*images, ids)
    assert logits.shape == (1, 32, VOCAB)
    assert sorted(encoded) == sorted(consumed) == [0, 1, 2]
    for i in range(3):
        assert encoded[i].shape == (1, 2 * TOKENS, EMBED)
        assert consumed[i] is encoded[i]
