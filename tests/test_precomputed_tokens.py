"""Fine-tuning on precomputed pair tokens, and captions trimmed to the batch's longest: the same training.

With the whole pair encoder frozen (`finetune.freeze: [pair_encoder.]`, the embedded default) the
pair encoder's output is computed once per pair; the captioner must then see exactly the tokens
it would have seen from the images, get the same loss and the same gradients. Trimming padding
columns must not change the loss either (causal attention: real positions never see later ones).
"""
from __future__ import annotations

import copy

import pytest
import torch

from clip4idc.data.dataset import CaptionDataset, PairDataset, Prepared, collate
from clip4idc.models import CaptionModel, create_clip
from clip4idc.text import CaptionTokenizer
from clip4idc.train.common import freeze
from clip4idc.train.finetune import (PrecomputedPairTokens, encode_pairs, finetune_loss, pair_encoder_frozen)
from clip4idc.train.loop import Processes

ARCH = "clip4idc-tiny"


def _model(joint: bool, image_size: int) -> CaptionModel:
    torch.manual_seed(0)
    clip = create_clip(ARCH, None)
    if image_size != clip.visual.image_size[0]:
        pytest.skip("the fixture's prepared images do not fit the tiny architecture")
    model = CaptionModel.from_clip(clip, intra_layers=3, joint=joint, heads=4, ffn=256, layers=3, dropout=0.1)
    freeze(model, ("pair_encoder.",))
    return model


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    from clip4idc.data.prepare import prepare
    from clip4idc.data.synthetic import synthesize
    root = tmp_path_factory.mktemp("synth")
    synthesize(root / "raw", seed=5, n_train=6, n_val=3, n_test=3, width=60, height=40, min_objects=2,
               max_objects=3, n_change_captions=3, n_no_change_captions=2, progress=False)
    prepare(root / "raw", root / "prepared", reader="clevr_change", image_size=64, empty_references="drop",
            progress=False)
    return Prepared(root / "prepared")


@pytest.mark.parametrize("joint", [True, False], ids=["pair-encoder", "clip-ft"])
def test_precomputed_tokens_give_the_loss_and_gradients_of_the_images(prepared, joint):
    tokenizer = CaptionTokenizer(ARCH, 24)
    model = _model(joint, prepared.image_size)
    assert pair_encoder_frozen(model)
    tokens = encode_pairs(model.pair_encoder, prepared, "train", batch_size=4, device=torch.device("cpu"),
                          progress=False)
    cached = CaptionModel(PrecomputedPairTokens(model.pair_encoder.embed_dim), copy.deepcopy(model.captioner))
    images = collate([CaptionDataset(prepared, "train", seed=1)[i] for i in (0, 3, 5)])
    halves = collate([CaptionDataset(prepared, "train", seed=1, tokens=tokens)[i] for i in (0, 3, 5)])
    assert images["text"] == halves["text"] and torch.equal(images["role"], halves["role"])

    losses, grads = [], []
    for m, batch in ((model, images), (cached, halves)):
        m.train()
        torch.manual_seed(7)   # the same dropout masks
        loss = finetune_loss(m, batch, tokenizer, Processes())
        loss.backward()
        losses.append(loss.detach())
        grads.append({n: p.grad for n, p in m.captioner.named_parameters() if p.grad is not None})
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-5, atol=1e-6)
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 10
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=1e-4, atol=1e-6, msg=name)
    # Nothing flowed into the frozen visual side.
    assert all(p.grad is None for p in model.pair_encoder.parameters())


def test_pair_dataset_yields_the_halves_of_a_pairs_tokens(prepared):
    model = _model(True, prepared.image_size).eval()
    tokens = encode_pairs(model.pair_encoder, prepared, "val", batch_size=2, device=torch.device("cpu"),
                          progress=False)
    with_images, with_tokens = PairDataset(prepared, "val"), PairDataset(prepared, "val", tokens=tokens)
    item, halves = with_images[1], with_tokens[1]
    assert item["pair_id"] == halves["pair_id"]
    with torch.no_grad():
        full = model.pair_encoder(item["before"][None], item["after"][None])[0]
    T = model.pair_encoder.tokens_per_image
    torch.testing.assert_close(halves["before"], full[:T], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(halves["after"], full[T:], rtol=1e-5, atol=1e-6)
    with pytest.raises(KeyError, match="no precomputed tokens"):
        tokens.halves("no-such-pair")


def test_trimmed_captions_keep_every_real_position_and_the_loss():
    tokenizer = CaptionTokenizer(ARCH, 24)
    captions = ["the small red cube has been moved", "no change", "the big shiny ball turned cyan !"]
    full, trimmed = tokenizer.training(captions), tokenizer.training(captions, trim=True)
    length = trimmed["input_ids"].shape[1]
    # The longest caption + <end>; nothing real cut, only padding.
    assert length == max(len(tokenizer._bpe.encode(c)) for c in captions) + 1 < 24
    for key in full:
        assert torch.equal(trimmed[key], full[key][:, :length])
        assert not full[key][:, length:].any()

    torch.manual_seed(0)
    model = CaptionModel.from_clip(create_clip(ARCH, None), intra_layers=3, joint=True, heads=4, ffn=256,
                                   layers=3, dropout=0.1).eval()
    g = torch.Generator().manual_seed(1)
    before, after = torch.randn(3, 3, 64, 64, generator=g), torch.randn(3, 3, 64, 64, generator=g)
    with torch.no_grad():
        memories = model.encode(before, after)
        logits = [model.captioner.decode(t["input_ids"], memories, positions=t["target_mask"]) for t in (full, trimmed)]
    torch.testing.assert_close(logits[1], logits[0], rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- standardised pair tokens

def test_standardised_inputs_are_what_the_captioner_reads_and_a_checkpoint_carries_them(prepared, tmp_path):
    """`finetune.standardize_tokens`: the captioner reads (tokens - shift) / scale, the same from
    precomputed tokens (training) as from images (decode), and through its checkpoint."""
    from clip4idc.models.build import load_caption_model
    from clip4idc.params import load
    from clip4idc.runtime import save_checkpoint
    model = _model(True, prepared.image_size).eval()
    plain = copy.deepcopy(model)
    tokens = encode_pairs(model.pair_encoder, prepared, "train", 4, torch.device("cpu"), progress=False)
    flat = tokens.tokens.flatten(0, 1)
    shift, scale = flat.mean(0), flat.std(0)
    model.captioner.standardize_inputs(shift, scale)
    x = tokens.tokens[:3]
    with torch.no_grad():
        for got, want in zip(model.captioner.encode(x), plain.captioner.encode((x - shift) / scale)):
            torch.testing.assert_close(got, want)
        assert not torch.allclose(model.captioner.encode(x)[-1], plain.captioner.encode(x)[-1])
    # Decode rebuilds the model from its checkpoint alone: the same shift and scale, the same logits.
    params = load("params.yaml", profile="smoke")
    save_checkpoint(tmp_path / "m.pt", {"kind": "finetune", "variant": "no-adapt", "seed": 0,
                                        "state_dict": model.state_dict(),
                                        "model": params.model.model_copy(update={"output_vocab": "clip"})
                                        .model_dump(mode="json")})
    loaded = load_caption_model(tmp_path / "m.pt")[0]
    assert torch.equal(loaded.captioner.input_shift, shift) and torch.equal(loaded.captioner.input_scale, scale)
    batch = collate([PairDataset(prepared, "val")[i] for i in range(2)])
    ids = torch.tensor([[49406, 320]] * 2)
    with torch.no_grad():
        torch.testing.assert_close(loaded(batch["before"], batch["after"], ids),
                                   model(batch["before"], batch["after"], ids))


def test_standardising_refuses_bad_statistics_and_a_trainable_pair_encoder(prepared, tmp_path):
    from clip4idc.params import load
    from clip4idc.train.finetune import finetune
    captioner = _model(True, prepared.image_size).captioner
    with pytest.raises(ValueError, match=r"\[128\]"):
        captioner.standardize_inputs(torch.zeros(64), torch.ones(64))
    with pytest.raises(ValueError, match="positive"):
        captioner.standardize_inputs(torch.zeros(128), torch.zeros(128))
    captioner.standardize_inputs(torch.zeros(128), torch.ones(128))
    with pytest.raises(ValueError, match="already"):
        captioner.standardize_inputs(torch.zeros(128), torch.ones(128))
    # The statistics are those of a frozen encoder's tokens: with a trainable one they would go stale.
    params = load("params.yaml", profile="smoke")
    # (model_copy skips validation, as a caller building the config by hand might: params refuse it at load)
    cfg = params.finetune.model_copy(update={"standardize_tokens": True, "freeze": ()})
    with pytest.raises(ValueError, match=r"standardize_tokens.*pair_encoder"):
        finetune(prepared.root, "no-adapt", 0, None, None, tmp_path / "m.pt", tmp_path / "log.json",
                 model_cfg=params.model, cfg=cfg, progress=False)
    assert not (tmp_path / "m.pt").exists()
