"""Pair encoder, captioner, the two model wholes and CLIP creation (tiny configs, random weights)."""
from __future__ import annotations

import open_clip
import pytest
import torch
import torch.nn.functional as F

from clip4idc.models import AdaptModel, CaptionModel, Captioner, PairEncoder, create_clip
from clip4idc.models.build import register_model_configs

ARCH = "clip4idc-tiny"
B = 2


@pytest.fixture(scope="module")
def clip():
    torch.manual_seed(0)
    return create_clip(ARCH, None).eval()


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(1)
    return torch.randn(B, 3, 64, 64, generator=g), torch.randn(B, 3, 64, 64, generator=g)


def small_clip(**vision):
    """A small open_clip CLIP built straight from config dicts (no registry entry needed)."""
    vision_cfg = dict(image_size=64, patch_size=16, layers=2, width=64, head_width=32) | vision
    text_cfg = dict(context_length=16, vocab_size=1000, width=64, heads=2, layers=1)
    return open_clip.model.CLIP(embed_dim=32, vision_cfg=vision_cfg, text_cfg=text_cfg).eval()


def caption_model(clip, joint=True, **kw):
    args = dict(intra_layers=3, joint=joint, heads=4, ffn=256, layers=3, dropout=0.1) | kw
    return CaptionModel.from_clip(clip, **args)


# --- pair encoder -------------------------------------------------------------------------------

@pytest.mark.parametrize("joint", [True, False])
def test_pair_encoder_shape(clip, images, joint):
    pe = PairEncoder(clip.visual, 3, joint=joint)
    assert pe.tokens_per_image == 17
    with torch.no_grad():
        tokens = pe(*images)
    assert tokens.shape == (B, 2 * 17, 128)
    assert pe.pair_vector(tokens).shape == (B, 128)


def test_tokens_per_image_from_positional_embedding():
    model = small_clip(patch_size=8)
    pe = PairEncoder(model.visual, 1)
    assert pe.tokens_per_image == 65
    assert pe.joint_positional_embedding.shape == (130, 64)
    with torch.no_grad():
        tokens = pe(torch.randn(B, 3, 64, 64), torch.randn(B, 3, 64, 64))
    assert tokens.shape == (B, 130, 32)


def test_joint_forward_equals_hand_computation(clip, images):
    torch.manual_seed(2)
    k = 3
    pe = PairEncoder(clip.visual, k)
    before, after = images
    v = clip.visual
    with torch.no_grad():
        def intra(img):
            x = v._embeds(img)
            for blk in v.transformer.resblocks[:k]:
                x = blk(x)
            return x
        x = torch.cat([intra(before) + pe.before_embedding, intra(after) + pe.after_embedding], dim=1)
        x = F.layer_norm(x + pe.joint_positional_embedding, (256,), pe.ln_mid.weight, pe.ln_mid.bias)
        for blk in v.transformer.resblocks[k:]:
            x = blk(x)
        expected = v.ln_post(x) @ v.proj
        torch.testing.assert_close(pe(before, after), expected)


def test_separate_mode_is_plain_clip_per_image(clip, images):
    pe = PairEncoder(clip.visual, 3, joint=False)
    before, after = images
    with torch.no_grad():
        tokens = pe(before, after)
        torch.testing.assert_close(tokens[:, 0], clip.encode_image(before))
        torch.testing.assert_close(tokens[:, 17], clip.encode_image(after))
    assert sum(p.numel() for p in pe.parameters()) == sum(p.numel() for p in clip.visual.parameters())


def test_sequence_first_blocks_give_same_output(images):
    torch.manual_seed(3)
    model = small_clip()
    pe = PairEncoder(model.visual, 1)
    with torch.no_grad():
        expected = pe(*images)
        model.visual.transformer.batch_first = False  # as older open_clip layouts: blocks take [L, N, D]
        for blk in model.visual.transformer.resblocks:
            blk.attn.batch_first = False
        torch.testing.assert_close(pe(*images), expected)


def test_before_after_embeddings_matter(clip, images):
    torch.manual_seed(4)
    pe = PairEncoder(clip.visual, 3)
    before, after = images
    with torch.no_grad():
        out = pe(before, after)
        assert not torch.allclose(pe(after, before), out.roll(17, dims=1), atol=1e-4)  # order matters
        # A random direction: a uniform shift of all features would be removed by ln_mid.
        pe.before_embedding.add_(torch.randn(256))
        assert not torch.allclose(pe(before, after), out, atol=1e-4)


def test_gradients_reach_new_parameters(clip, images):
    pe = PairEncoder(clip.visual, 3)
    tokens = pe(*images)
    (tokens * torch.randn_like(tokens)).sum().backward()
    for p in (pe.before_embedding, pe.after_embedding, pe.joint_positional_embedding, pe.ln_mid.weight):
        assert p.grad is not None and p.grad.abs().sum() > 0
    clip.zero_grad(set_to_none=True)


def test_pair_vector_is_mean_of_cls(clip):
    pe = PairEncoder(clip.visual, 3)
    tokens = torch.randn(B, 34, 128)
    torch.testing.assert_close(pe.pair_vector(tokens), (tokens[:, 0] + tokens[:, 17]) / 2)


def test_new_parameter_count(clip):
    pe = PairEncoder(clip.visual, 3)
    width, t = 256, 17
    visual = sum(p.numel() for p in clip.visual.parameters())
    assert sum(p.numel() for p in pe.parameters()) == visual + 2 * width + 2 * t * width + 2 * width
    new = {n for n, _ in pe.named_parameters() if not n.startswith("visual.")}
    assert new == {"before_embedding", "after_embedding", "joint_positional_embedding", "ln_mid.weight",
                   "ln_mid.bias"}
    assert torch.equal(pe.ln_mid.weight, torch.ones(width)) and torch.equal(pe.ln_mid.bias, torch.zeros(width))


def test_shares_clip_vision_weights(clip):
    pe = PairEncoder(clip.visual, 3)
    assert pe.visual is clip.visual


@pytest.mark.parametrize("intra", [0, 4, 5, -1])
def test_intra_layers_validated(clip, intra):
    with pytest.raises(ValueError, match=rf"between 1 and 3 .*4-layer.*got {intra}"):
        PairEncoder(clip.visual, intra)
    PairEncoder(clip.visual, intra, joint=False)  # CLIP-FT ignores the split


@pytest.mark.parametrize("vision, message", [
    (dict(attentional_pool=True), "attn_pool"),
    (dict(patch_dropout=0.5), "patch dropout"),
    (dict(final_ln_after_pool=True), "final_ln_after_pool"),
    (dict(pool_type="avg"), "pool_type"),
])
def test_unsupported_vision_towers(vision, message):
    with pytest.raises(ValueError, match=message):
        PairEncoder(small_clip(**vision).visual, 1)


def test_image_size_checked(clip):
    pe = PairEncoder(clip.visual, 3)
    with pytest.raises(ValueError, match="expects"):
        pe(torch.randn(1, 3, 32, 32), torch.randn(1, 3, 32, 32))


# --- captioner and CaptionModel -----------------------------------------------------------------

def test_caption_model_logits_shape_and_names(clip, images):
    model = caption_model(clip).eval()
    ids = torch.randint(0, 49408, (B, 23))
    with torch.no_grad():
        logits = model(*images, ids)
    assert logits.shape == (B, 23, 49408)
    names = {n for n, _ in model.named_parameters()}
    assert {"captioner.token_embedding.weight", "captioner.positional_embedding",
            "pair_encoder.before_embedding", "pair_encoder.joint_positional_embedding",
            "pair_encoder.ln_mid.weight", "pair_encoder.visual.proj"} <= names
    assert not any(n.startswith(("captioner.transformer", "pair_encoder.transformer")) for n in names)
    assert not any(".transformer.resblocks" in n and not n.startswith("pair_encoder.visual.") for n in names)
    assert "pair_encoder.before_embedding" not in {n for n, _ in caption_model(clip, joint=False).named_parameters()}


def test_embeddings_and_lm_head_are_tied_to_clip(clip, images):
    model = caption_model(clip).eval()
    cap = model.captioner
    assert cap.token_embedding is clip.token_embedding
    assert cap.positional_embedding is clip.positional_embedding
    assert cap.token_embedding.weight.data_ptr() == clip.token_embedding.weight.data_ptr()
    seen = {}
    cap.head.ln.register_forward_hook(lambda m, i, o: seen.setdefault("h", o))
    ids = torch.randint(0, 1000, (B, 10))
    logits = model(*images, ids)
    torch.testing.assert_close(logits, seen["h"] @ clip.token_embedding.weight.T + cap.head.bias)
    # Rows of words absent from the input get gradient only through the LM head: proof of the tie.
    logits.sum().backward()
    assert clip.token_embedding.weight.grad[40000:].abs().sum() > 0
    clip.zero_grad(set_to_none=True)


def test_new_captioner_weights_initialised_bert_style(clip):
    before = clip.token_embedding.weight.detach().clone()
    cap = Captioner(clip.token_embedding, clip.positional_embedding, heads=4, ffn=256)
    assert torch.equal(clip.token_embedding.weight, before)  # the tied CLIP weights are left alone
    w = cap.decoder[0].cross_attn.query.weight
    assert abs(w.std().item() - 0.02) < 0.003
    assert torch.equal(cap.decoder[0].cross_attn.query.bias, torch.zeros(128))
    assert torch.equal(cap.head.bias, torch.zeros(49408))
    assert torch.equal(cap.encoder[1].ln_ffn.weight, torch.ones(128))


def test_causal_mask(clip, images):
    model = caption_model(clip).eval()
    ids = torch.randint(0, 49408, (B, 12))
    changed = ids.clone()
    changed[:, 7:] = torch.randint(0, 49408, (B, 5))
    with torch.no_grad():
        memories = model.encode(*images)
        a, b = model.decode(ids, memories), model.decode(changed, memories)
    torch.testing.assert_close(a[:, :7], b[:, :7])
    assert not torch.allclose(a[:, 7:], b[:, 7:])


def test_key_padding_mask_keeps_real_positions(clip, images):
    model = caption_model(clip).eval()
    ids = torch.randint(0, 49408, (B, 10))
    pad = torch.zeros(B, 10, dtype=torch.bool)
    pad[:, 6:] = True
    with torch.no_grad():
        memories = model.encode(*images)
        torch.testing.assert_close(model.decode(ids, memories, pad)[:, :6], model.decode(ids, memories)[:, :6])


def test_decoder_layer_i_attends_to_encoder_layer_i(clip, images):
    model = caption_model(clip).eval()
    cap = model.captioner
    encoded, consumed = {}, {}
    for i, layer in enumerate(cap.encoder):
        layer.register_forward_hook(lambda m, args, out, i=i: encoded.__setitem__(i, out))
    for i, layer in enumerate(cap.decoder):
        layer.cross_attn.register_forward_pre_hook(lambda m, args, i=i: consumed.__setitem__(i, args[1]))
    with torch.no_grad():
        memories = model.encode(*images)
        assert len(memories) == 3
        model.decode(torch.randint(0, 1000, (B, 5)), memories)
    for i in range(3):
        assert memories[i] is encoded[i] and consumed[i] is encoded[i]
    assert not torch.allclose(memories[0], memories[2])


def test_captioner_validates_layers_and_lengths(clip, images):
    with pytest.raises(ValueError, match="must equal"):
        Captioner(clip.token_embedding, clip.positional_embedding, heads=4, ffn=256, encoder_layers=3,
                  decoder_layers=2)
    with pytest.raises(ValueError, match="divisible"):
        Captioner(clip.token_embedding, clip.positional_embedding, heads=3, ffn=256)
    model = caption_model(clip).eval()
    with torch.no_grad(), pytest.raises(ValueError, match="48 text positions"):
        model(*images, torch.zeros(B, 49, dtype=torch.long))


def test_from_clip_with_given_pair_encoder(clip):
    adapted = AdaptModel(clip, 3)
    model = caption_model(clip, pair_encoder=adapted.pair_encoder)
    assert model.pair_encoder is adapted.pair_encoder
    with pytest.raises(ValueError, match="contradicts"):
        caption_model(clip, joint=False, pair_encoder=adapted.pair_encoder)
    with pytest.raises(ValueError, match="different vision tower"):
        caption_model(create_clip(ARCH, None), pair_encoder=adapted.pair_encoder)


# --- AdaptModel ---------------------------------------------------------------------------------

def test_adapt_model_outputs(clip, images):
    model = AdaptModel(clip, 3)
    ids = open_clip.get_tokenizer(ARCH)(["the red ball moved", "nothing changed"], context_length=24)
    text, pair, scale = model(*images, ids)
    assert text.shape == pair.shape == (B, 128)
    assert scale.item() == pytest.approx(clip.logit_scale.exp().item())
    assert not torch.allclose(pair.norm(dim=-1), torch.ones(B))  # not normalised
    # Short ids give exactly CLIP's feature of the same caption padded to the full context.
    padded = torch.zeros(B, 48, dtype=torch.long)
    padded[:, :24] = ids
    with torch.no_grad():
        torch.testing.assert_close(model.encode_text(ids), clip.encode_text(padded))
    names = {n for n, _ in model.named_parameters()}
    assert {"pair_encoder.before_embedding", "pair_encoder.after_embedding",
            "pair_encoder.joint_positional_embedding", "pair_encoder.ln_mid.weight"} <= names
    assert all(n.startswith(("clip.", "pair_encoder.")) for n in names)
    assert not any(n.startswith("pair_encoder.visual.") for n in names)  # listed once, as clip.visual.*


# --- create_clip --------------------------------------------------------------------------------

def test_register_is_idempotent():
    from open_clip import factory
    register_model_configs()
    n = len(factory._MODEL_CONFIG_PATHS)
    register_model_configs()
    assert len(factory._MODEL_CONFIG_PATHS) == n
    assert ARCH in open_clip.list_models()


def test_create_clip_round_trips_a_state_dict_file(clip, tmp_path):
    path = tmp_path / "clip.pt"
    torch.save(clip.state_dict(), path)
    loaded = create_clip(ARCH, str(path))
    for (name, a), (_, b) in zip(clip.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    wrapped = tmp_path / "wrapped.pt"
    torch.save({"state_dict": clip.state_dict(), "step": 3}, wrapped)
    assert torch.equal(create_clip(ARCH, str(wrapped)).visual.proj, clip.visual.proj)


def test_create_clip_rejects_mismatched_keys(clip, tmp_path):
    state = dict(clip.state_dict())
    state.pop("visual.proj")
    state["visual.bogus"] = torch.zeros(1)
    path = tmp_path / "bad.pt"
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"missing keys.*visual\.proj.*unexpected keys.*visual\.bogus"):
        create_clip(ARCH, str(path))


def test_create_clip_missing_file_names_path(tmp_path):
    path = tmp_path / "nowhere" / "clip.pt"
    with pytest.raises(FileNotFoundError, match=str(path)):
        create_clip(ARCH, str(path))


def test_create_clip_unknown_arch():
    with pytest.raises(ValueError, match="unknown CLIP architecture"):
        create_clip("no-such-arch", None)


def test_openai_needs_quickgelu_arch():
    with pytest.raises(ValueError, match="ViT-B-32-quickgelu"):
        create_clip("ViT-B-32", "openai")


@pytest.mark.timeout(60)
def test_openai_offline_gives_clear_error(monkeypatch):
    import huggingface_hub.constants
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    try:
        model = create_clip("ViT-B-32-quickgelu", "openai")
    except RuntimeError as e:
        assert "open_clip.create_model('ViT-B-32-quickgelu', pretrained='openai')" in str(e)
        assert "model.pretrained" in str(e)
    else:
        del model
        pytest.skip("OpenAI weights are in the local cache")
