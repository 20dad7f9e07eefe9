"""The captioner's output vocabulary (`model.output_vocab: train`): the same model, scoring fewer words.

Restricting the head must change nothing but which words are scored: each logit is the full head's
logit of its word, decoding picks the best word among them, the loss is the cross-entropy over them,
and a checkpoint carries its vocabulary (tiny config, random weights). Compacting the word embedding to
the rows still read must change nothing at all: the same logits, and training gives the same weights.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from clip4idc.generate import beam_ids, greedy_ids
from clip4idc.models import CaptionModel, create_clip
from clip4idc.models.build import load_caption_model
from clip4idc.params import ModelParams
from clip4idc.runtime import save_checkpoint
from clip4idc.text import CaptionTokenizer
from clip4idc.train.finetune import finetune_loss, restrict_vocabulary
from clip4idc.train.loop import Processes
from clip4idc.train.optim import BertAdam

ARCH = "clip4idc-tiny"
CAPTIONS = ["the small red cube has been moved", "the large gray sphere changed its color",
            "no change was made", "there is no difference"]


@pytest.fixture(scope="module")
def tok():
    return CaptionTokenizer(ARCH, 24)


@pytest.fixture(scope="module")
def words(tok):
    return tok.target_vocabulary(CAPTIONS)


def _model(seed: int = 0) -> CaptionModel:
    torch.manual_seed(seed)
    return CaptionModel.from_clip(create_clip(ARCH, None), intra_layers=3, joint=True, heads=4, ffn=256,
                                  layers=3, dropout=0.1).eval()


def _restricted(words) -> tuple[CaptionModel, CaptionModel]:
    full, small = _model(), _model()
    small.captioner.restrict_output(words)
    return full, small


def _pairs(n: int = 3):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 3, 64, 64, generator=g), torch.randn(n, 3, 64, 64, generator=g)


def test_target_vocabulary_holds_every_training_target_and_end_but_not_padding(tok, words):
    t = tok.training(CAPTIONS)
    targets = set(t["target_ids"][t["target_mask"]].tolist())
    assert targets <= set(words) and tok.eot_id in words
    assert set(words) - targets == set()            # nothing beyond what training targets
    assert tok.pad_id not in words and words == sorted(words)
    assert len(words) < 40                          # a few dozen of 49,408


def test_each_logit_is_the_full_heads_logit_of_its_word(words):
    full, small = _restricted(words)
    before, after = _pairs()
    ids = torch.tensor([[49406, 320, 1400, 518]] * 3)
    with torch.no_grad():
        expected = full(before, after, ids)[..., torch.tensor(words)]
        got = small(before, after, ids)
    assert got.shape[-1] == len(words)
    torch.testing.assert_close(got, expected)


def test_decoding_picks_the_best_word_of_the_output_vocabulary(tok, words):
    full, small = _restricted(words)
    before, after = _pairs()
    # Reference: the full head, every word outside the vocabulary masked out.
    outside = torch.ones(full.captioner.token_embedding.num_embeddings, dtype=torch.bool)
    outside[torch.tensor(words)] = False
    with torch.no_grad():
        full.captioner.head.bias[outside] = float("-inf")
    kw = dict(sot_id=tok.sot_id, eot_id=tok.eot_id, max_len=6)
    got = greedy_ids(small, before, after, **kw)
    assert torch.equal(got, greedy_ids(full, before, after, **kw))
    assert set(got.flatten().tolist()) <= set(words)
    assert torch.equal(beam_ids(small, before, after, beam_size=3, **kw),
                       beam_ids(full, before, after, beam_size=3, **kw))


def test_loss_is_the_cross_entropy_over_the_output_vocabulary(tok, words):
    full, small = _restricted(words)
    before, after = _pairs(4)
    batch = {"before": before, "after": after, "text": CAPTIONS, "role": torch.tensor([0, 0, 1, 1])}
    procs = Processes()
    with torch.no_grad():
        got = finetune_loss(small, batch, tok, procs)
        t = tok.training(CAPTIONS)
        real = t["target_mask"]
        logits = full(before, after, t["input_ids"], positions=real)[:, torch.tensor(words)]
        index = torch.searchsorted(torch.tensor(words), t["target_ids"][real])
        role = batch["role"][:, None].expand_as(real)[real]
        ce = F.cross_entropy(logits, index, reduction="none")
        expected = ce[role == 0].mean() + ce[role == 1].mean()
    torch.testing.assert_close(got, expected)


def test_a_word_outside_the_vocabulary_is_named(words):
    _, small = _restricted(words)
    with pytest.raises(ValueError, match=r"\[7\]"):
        small.captioner.output_index(torch.tensor([words[0], 7]))
    with pytest.raises(ValueError, match="output vocabulary"):
        small.captioner.restrict_output([0, 49408])


def _saved_and_loaded(tmp_path, model: CaptionModel) -> CaptionModel:
    """`model` through a fine-tuning checkpoint and `load_caption_model`, as decode reads it."""
    model_cfg = ModelParams.model_validate({
        "arch": ARCH, "pretrained": "pipeline", "intra_layers": 3, "max_tokens": 24, "output_vocab": "train",
        "captioner": {"heads": 4, "ffn": 256, "layers": 3, "dropout": 0.1}})
    save_checkpoint(tmp_path / "m.pt", {"kind": "finetune", "variant": "adapt", "seed": 0,
                                        "state_dict": model.state_dict(), "model": model_cfg.model_dump(mode="json")})
    return load_caption_model(tmp_path / "m.pt")[0]


def test_a_checkpoint_carries_its_output_vocabulary(tmp_path, words):
    _, small = _restricted(words)
    loaded = _saved_and_loaded(tmp_path, small)
    assert loaded.captioner.output_ids.tolist() == words
    before, after = _pairs()
    ids = torch.tensor([[49406, 320]] * 3)
    with torch.no_grad():
        torch.testing.assert_close(loaded(before, after, ids), small(before, after, ids))


# --------------------------------------------------------------------------- compact word embedding

def _compact(tok) -> tuple[CaptionModel, CaptionModel]:
    """(output vocabulary only, output vocabulary + compact embedding), same weights."""
    restricted, compact = _model(), _model()
    restricted.captioner.restrict_output(tok.target_vocabulary(CAPTIONS))
    restrict_vocabulary(compact.captioner, tok, CAPTIONS)
    return restricted, compact


def test_the_compact_embedding_keeps_the_rows_training_and_decoding_read(tok, words):
    restricted, compact = _compact(tok)
    cap = compact.captioner
    assert cap.embedding_ids.tolist() == sorted(set(words) | {tok.sot_id, tok.pad_id})
    assert cap.token_embedding.num_embeddings == len(words) + 2
    torch.testing.assert_close(cap.token_embedding.weight, restricted.captioner.token_embedding.weight[cap.embedding_ids])
    t = tok.training(CAPTIONS)
    assert set(t["input_ids"].flatten().tolist()) <= set(cap.embedding_ids.tolist())


def test_compacting_draws_no_random_numbers(tok):
    """A run that compacts its embedding must see the same dropout masks as one that does not."""
    model = _model()
    model.captioner.restrict_output(tok.target_vocabulary(CAPTIONS))
    state = torch.get_rng_state()
    model.captioner.compact_embedding([tok.sot_id, tok.pad_id])
    assert torch.equal(torch.get_rng_state(), state)


def test_the_compact_embedding_gives_the_same_logits_and_captions(tok):
    restricted, compact = _compact(tok)
    before, after = _pairs()
    ids = tok.training(CAPTIONS[:3])["input_ids"]   # <start>, words and padding (id 0)
    with torch.no_grad():
        torch.testing.assert_close(compact(before, after, ids), restricted(before, after, ids), rtol=0, atol=0)
    kw = dict(sot_id=tok.sot_id, eot_id=tok.eot_id, max_len=6)
    assert torch.equal(greedy_ids(compact, before, after, **kw), greedy_ids(restricted, before, after, **kw))
    assert torch.equal(beam_ids(compact, before, after, beam_size=3, **kw),
                       beam_ids(restricted, before, after, beam_size=3, **kw))


def test_training_with_the_compact_embedding_gives_the_same_weights(tok):
    """Three BertAdam steps (weight decay, clipping) on each: every weight equal bit for bit, the embedding row by
    row (a full fine-tuning on the embedded data gave identical losses for 130 steps too)."""
    models = _compact(tok)
    before, after = _pairs(4)
    batch = {"before": before, "after": after, "text": CAPTIONS, "role": torch.tensor([0, 0, 1, 1])}
    for model in models:
        model.train()
        torch.manual_seed(3)   # the same dropout masks
        opt = BertAdam([p for p in model.parameters() if p.requires_grad], lr=1e-2, t_total=10, warmup=0.1,
                       schedule="warmup_linear", betas=(0.9, 0.98), eps=1e-6, weight_decay=0.01, max_grad_norm=1.0)
        for _ in range(3):
            opt.zero_grad()
            finetune_loss(model, batch, tok, Processes()).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)   # binding: the norm over all gradients
            opt.step()
    restricted, compact = (m.state_dict() for m in models)
    rows = compact["captioner.embedding_ids"]
    torch.testing.assert_close(compact.pop("captioner.token_embedding.weight"),
                               restricted.pop("captioner.token_embedding.weight")[rows], rtol=0, atol=0)
    compact.pop("captioner.embedding_ids")
    assert compact.keys() == restricted.keys()
    for name in compact:
        torch.testing.assert_close(compact[name], restricted[name], rtol=0, atol=0, msg=name)   # bit for bit
    assert not torch.equal(compact["captioner.head.bias"], _model().captioner.head.bias)   # it trained


def test_a_word_without_an_embedding_row_is_named(tok):
    _, compact = _compact(tok)
    with pytest.raises(ValueError, match=r"\[7\].*word embedding"):
        compact.captioner.embed(torch.tensor([[tok.sot_id, 7]]))
    with pytest.raises(ValueError, match="fixed"):
        compact.captioner.restrict_output([7])
    with pytest.raises(ValueError, match="already compact"):
        compact.captioner.compact_embedding([7])
    with pytest.raises(ValueError, match="restrict_output first"):
        _model().captioner.compact_embedding([tok.sot_id])


def test_a_checkpoint_carries_its_compact_embedding(tmp_path, tok):
    _, compact = _compact(tok)
    loaded = _saved_and_loaded(tmp_path, compact)
    assert torch.equal(loaded.captioner.embedding_ids, compact.captioner.embedding_ids)
    before, after = _pairs()
    kw = dict(sot_id=tok.sot_id, eot_id=tok.eot_id, max_len=6)
    assert torch.equal(greedy_ids(loaded, before, after, **kw), greedy_ids(compact, before, after, **kw))
