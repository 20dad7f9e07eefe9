"""Caption tokenisation, greedy decoding and the two training losses."""
from __future__ import annotations

import math
import pickle

import open_clip
import pytest
import torch

from clip4idc.generate import decode_dataset, greedy_decode, greedy_ids
from clip4idc.models import CaptionModel, create_clip
from clip4idc.text import CaptionTokenizer
from clip4idc.train.losses import caption_loss, symmetric_infonce

ARCH = "clip4idc-tiny"


@pytest.fixture(scope="module")
def tok():
    return CaptionTokenizer(ARCH, 24)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    clip = create_clip(ARCH, None)
    return CaptionModel.from_clip(clip, intra_layers=3, joint=True, heads=4, ffn=256, layers=3, dropout=0.1).eval()


def images(n, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 64, 64, generator=g), torch.randn(n, 3, 64, 64, generator=g)


# --- tokenizer ----------------------------------------------------------------------------------

def test_training_is_retrieval_shifted_by_one(tok):
    captions = ["The red ball moved to the left.", "no change !--", ""]
    full = tok.retrieval(captions)
    out = tok.training(captions)
    assert full.shape == (3, 24)
    assert out["input_ids"].shape == out["target_ids"].shape == out["target_mask"].shape == (3, 24)
    assert out["target_mask"].dtype == torch.bool
    for i in range(3):
        n = int((full[i] == tok.eot_id).nonzero()[0])  # index of <end> = caption tokens + 1
        assert full[i, 0] == tok.sot_id
        assert torch.equal(out["input_ids"][i, :n], full[i, :n])
        assert torch.equal(out["target_ids"][i, :n], full[i, 1:n + 1])
        assert out["target_ids"][i, n - 1] == tok.eot_id
        real = out["target_ids"][i, :n] != 0
        assert out["target_mask"][i].tolist() == real.tolist() + [False] * (24 - n)
        assert tok.eot_id not in out["input_ids"][i].tolist()
    # "!" is BPE id 0, the padding value. The authors' loss ignores id 0 (CrossEntropyLoss(ignore_index=0)),
    # so a real "!" of a caption is not a target either, though it stays in the teacher-forced input.
    bang = out["target_ids"][1].tolist().index(0)
    assert bang < int((full[1] == tok.eot_id).nonzero()[0]) and not out["target_mask"][1, bang]
    assert out["input_ids"][1, bang + 1] == 0
    assert out["target_mask"][0].sum() == int((full[0] == tok.eot_id).nonzero()[0])
    assert out["target_mask"][2].sum() == 1  # empty caption: just <end>


def test_captions_keep_max_tokens_minus_one_tokens_as_the_authors():
    """The authors' caption loader (max_words 32): the caption keeps 31 tokens, the input is <start> + 31,
    the target 31 + <end>, 32 positions each. CLIP's text encoder (retrieval) keeps 30 between <start>/<end>."""
    tok = CaptionTokenizer("ViT-B-32-quickgelu", 32)
    long = " ".join(f"cube{i}" if i % 2 else "cube" for i in range(40))
    words = open_clip.get_tokenizer("ViT-B-32-quickgelu").encode(long)
    assert len(words) > 40
    out = tok.training([long])
    assert out["input_ids"].shape == (1, 32) and out["target_mask"].all()
    assert out["input_ids"][0].tolist() == [tok.sot_id] + words[:31]
    assert out["target_ids"][0].tolist() == words[:31] + [tok.eot_id]
    assert tok.retrieval([long])[0].tolist() == [tok.sot_id] + words[:30] + [tok.eot_id]


def test_truncation_keeps_end_token():
    tok = CaptionTokenizer(ARCH, 8)
    long = " ".join(["cube"] * 50)
    full = tok.retrieval([long])
    assert full[0, 0] == tok.sot_id and full[0, -1] == tok.eot_id and (full != 0).all()
    out = tok.training([long])
    assert out["target_ids"][0, -1] == tok.eot_id and out["target_mask"].all()
    assert tok.eot_id not in out["input_ids"][0].tolist()
    assert tok.decode(out["target_ids"]) == [" ".join(["cube"] * 7)]


def test_each_caption_is_encoded_once_with_the_same_ids(monkeypatch):
    """training and target_vocabulary memoise a caption's BPE ids (each epoch tokenises the same captions again):
    a caption seen before is not encoded again, a new one is, and the ids are open_clip's."""
    tok = CaptionTokenizer(ARCH, 12)
    captions = ["The Red ball  moved.", " ".join(["cube"] * 30), "", "no change !--", "a CUBE became &amp; blue"]
    encoded = []
    original = tok._bpe.encode
    monkeypatch.setattr(tok._bpe, "encode", lambda text: encoded.append(text) or original(text))
    first = tok.training(captions, trim=True)
    assert encoded == captions
    again = tok.training(captions + ["a new caption"], trim=True)
    vocabulary = tok.target_vocabulary(captions)
    assert encoded == captions + ["a new caption"]
    for key in first:
        assert torch.equal(again[key][:len(captions), :first[key].shape[1]], first[key])
    # the same ids open_clip's tokenizer gives (retrieval is its call; test_training_is_retrieval_shifted_by_one)
    full = tok.retrieval(captions)
    assert vocabulary == sorted(({tok.eot_id} | set(full.flatten().tolist())) - {tok.sot_id, tok.pad_id})
    assert tok.training([])["input_ids"].shape == (0, 12)
    # still picklable (as open_clip's tokenizer), memo and all
    fresh = CaptionTokenizer(ARCH, 12)
    fresh.training(captions)
    copy = pickle.loads(pickle.dumps(fresh))
    assert set(copy._memo) == set(captions)
    assert all(torch.equal(copy.training(captions, trim=True)[key], first[key]) for key in first)


def test_decode_round_trip_lowercases(tok):
    targets = tok.training(["The Blue CUBE became Yellow", "a small sphere was added"])["target_ids"]
    assert tok.decode(targets) == ["the blue cube became yellow", "a small sphere was added"]  # cut at <end>
    assert tok.decode([[tok.eot_id, 320]]) == [""]


# The authors' evaluation (main_task_caption.py, eval_epoch) BPE-decodes every generated id with their
# tokenizer, cuts the text at the first "<|endoftext|>", then at the first "!", and strips. The expected
# strings below were produced by running exactly that on these ids with their tokenizer
# (modules/tokenization_clip.py); they are facts about their output, not a re-derivation of ours.
_EOT, _SOT = 49407, 49406


def _enc(text):
    return open_clip.get_tokenizer("ViT-B-32-quickgelu").encode(text)


def _bytes(text):  # byte-level BPE tokens (no end-of-word mark) spelling `text`
    t = open_clip.get_tokenizer("ViT-B-32-quickgelu")
    return [t.encoder[t.byte_encoder[b]] for b in text.encode()]


AUTHORS_POSTPROCESSING = [
    ("cut at the end token", lambda: _enc("the blue ball moved") + [_EOT] + _enc("to the left"),
     "the blue ball moved"),
    ("end token first", lambda: [_EOT] + _enc("the cube"), ""),
    ("no end token", lambda: _enc("the small cube changed to red"), "the small cube changed to red"),
    ("a generated start token stays as text", lambda: [_SOT] + _enc("the cube moved") + [_EOT],
     "<|startoftext|>the cube moved"),
    ("padding id 0 inside", lambda: _enc("no change") + [0] + _enc("cube") + [_EOT], "no change"),
    ("a generated '!' cuts too", lambda: _enc("wow! the cube moved") + [_EOT], "wow"),
    ("'<|endoftext|>' spelled by ordinary tokens", lambda: _enc("the cube") + _bytes("<|endoftext|")
     + [open_clip.get_tokenizer("ViT-B-32-quickgelu").encoder["></w>"]] + _enc("moved"), "the cube"),
    ("padding after the end token", lambda: _enc("the red sphere") + [_EOT, 0, 0], "the red sphere"),
    ("start token after the end token", lambda: _enc("a cube") + [_EOT, _SOT], "a cube"),
    ("padding only", lambda: [0, 0, 0], ""),
    ("start token mid-caption", lambda: _enc("the") + [_SOT] + _enc("cube is gone") + [_EOT],
     "the <|startoftext|>cube is gone"),
]


@pytest.mark.parametrize("case, ids, expected", AUTHORS_POSTPROCESSING, ids=[c[0] for c in AUTHORS_POSTPROCESSING])
def test_decode_post_processes_as_the_authors(case, ids, expected):
    assert CaptionTokenizer("ViT-B-32-quickgelu", 32).decode([ids()]) == [expected]


def test_tokenizer_validates(tok):
    assert (tok.sot_id, tok.eot_id, tok.pad_id) == (49406, 49407, 0)
    with pytest.raises(ValueError, match="context length 48"):
        CaptionTokenizer(ARCH, 49)
    with pytest.raises(ValueError, match="unknown CLIP architecture"):
        CaptionTokenizer("no-such-arch", 24)


# --- losses -------------------------------------------------------------------------------------

def test_symmetric_infonce_matches_hand_computation():
    g = torch.Generator().manual_seed(0)
    text, pair, scale = torch.randn(4, 8, generator=g), torch.randn(4, 8, generator=g), 10.0
    t = [[v / math.sqrt(sum(x * x for x in row)) for v in row] for row in text.tolist()]
    p = [[v / math.sqrt(sum(x * x for x in row)) for v in row] for row in pair.tolist()]
    s = [[scale * sum(a * b for a, b in zip(ti, pj)) for pj in p] for ti in t]

    def ce_rows(m):
        return sum(math.log(sum(math.exp(v) for v in row)) - row[i] for i, row in enumerate(m)) / len(m)
    expected = (ce_rows(s) + ce_rows([list(col) for col in zip(*s)])) / 2
    assert symmetric_infonce(text, pair, torch.tensor(scale)).item() == pytest.approx(expected, rel=1e-5)


def test_symmetric_infonce_prefers_matched_pairs():
    g = torch.Generator().manual_seed(1)
    pair = torch.randn(16, 32, generator=g)
    text = pair + 0.1 * torch.randn(16, 32, generator=g)
    matched = symmetric_infonce(text, pair, 100.0)
    shuffled = symmetric_infonce(text, pair[torch.randperm(16, generator=g)], 100.0)
    assert matched < shuffled


def test_caption_loss_masked_mean():
    g = torch.Generator().manual_seed(2)
    logits, target = torch.randn(3, 5, 7, generator=g), torch.randint(0, 7, (3, 5), generator=g)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], dtype=torch.bool)
    ce = -logits.log_softmax(-1).gather(-1, target[..., None])[..., 0]
    assert caption_loss(logits, target, mask).item() == pytest.approx(ce[mask].mean().item(), rel=1e-6)
    changed = logits.clone()
    changed[~mask] = 100.0  # masked positions never count
    assert caption_loss(changed, target, mask).item() == pytest.approx(ce[mask].mean().item(), rel=1e-6)


def test_caption_loss_sums_per_role_means():
    g = torch.Generator().manual_seed(3)
    logits, target = torch.randn(4, 5, 7, generator=g), torch.randint(0, 7, (4, 5), generator=g)
    mask = torch.tensor([[1, 1, 0, 0, 0], [1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]], dtype=torch.bool)
    role = torch.tensor([0, 1, 0, 1])
    ce = -logits.log_softmax(-1).gather(-1, target[..., None])[..., 0]
    change = (ce[0, :2].sum() + ce[2, :3].sum()) / 5      # role 0: 5 tokens
    no_change = (ce[1].sum() + ce[3, :1].sum()) / 6       # role 1: 6 tokens
    got = caption_loss(logits, target, mask, role=role)
    assert got.item() == pytest.approx((change + no_change).item(), rel=1e-6)
    # Roles need not be 0..k-1, and a single role reduces to the plain masked mean.
    assert caption_loss(logits, target, mask, role=role * 7 + 3).item() == pytest.approx(got.item(), rel=1e-6)
    assert caption_loss(logits, target, mask, role=torch.zeros(4, dtype=torch.long)).item() == pytest.approx(
        caption_loss(logits, target, mask).item(), rel=1e-6)


def test_caption_loss_backpropagates(model, tok):
    before, after = images(2)
    batch = tok.training(["the red cube moved", "no change"])
    model.train()
    try:
        logits = model(before, after, batch["input_ids"])
        loss = caption_loss(logits, batch["target_ids"], batch["target_mask"], role=torch.tensor([0, 1]))
        loss.backward()
    finally:
        model.eval()
        model.zero_grad(set_to_none=True)
    assert torch.isfinite(loss) and loss.item() > 0


# --- greedy decoding ----------------------------------------------------------------------------

def test_greedy_decode_returns_strings_within_max_len(model, tok):
    before, after = images(3)
    texts = greedy_decode(model, before, after, tok, max_len=6)
    assert len(texts) == 3 and all(isinstance(t, str) for t in texts)
    ids = greedy_ids(model, before, after, sot_id=tok.sot_id, eot_id=tok.eot_id, max_len=6)
    assert ids.shape[0] == 3 and ids.shape[1] <= 6
    assert tok.decode(ids) == texts


def test_greedy_decode_stops_at_end_token(model, tok):
    before, after = images(3)
    with torch.no_grad():
        model.captioner.head.bias[tok.eot_id] += 1e4
    try:
        assert greedy_decode(model, before, after, tok, max_len=10) == ["", "", ""]
        ids = greedy_ids(model, before, after, sot_id=tok.sot_id, eot_id=tok.eot_id, max_len=10)
        assert ids.shape == (3, 1)  # all ended at the first step: no further steps
    finally:
        with torch.no_grad():
            model.captioner.head.bias[tok.eot_id] -= 1e4


def test_decode_dataset_maps_pair_ids(model, tok):
    before, after = images(5)
    loader = [{"before": before[:3], "after": after[:3], "pair_id": ["000001.png", "000001.png_n", "000002.png"]},
              {"before": before[3:], "after": after[3:], "pair_id": ["000002.png_n", "000003.png"]}]
    model.train()
    predictions = decode_dataset(model, loader, tok, max_len=4, progress=False)
    assert model.training  # the caller's mode is restored
    model.eval()
    assert list(predictions) == ["000001.png", "000001.png_n", "000002.png", "000002.png_n", "000003.png"]
    assert predictions["000001.png"] == greedy_decode(model, before[:1], after[:1], tok, 4)[0]


def test_logits_at_real_positions_give_the_full_caption_loss():
    """Training computes the head only at real target tokens; the loss must not change."""
    from clip4idc.models.build import create_clip
    from clip4idc.models.idc import CaptionModel
    from clip4idc.text import CaptionTokenizer
    from clip4idc.train.losses import caption_loss, token_loss

    torch.manual_seed(0)
    clip = create_clip("clip4idc-tiny", None)
    model = CaptionModel.from_clip(clip, intra_layers=3, joint=True, heads=4, ffn=256, layers=3, dropout=0.0).eval()
    tok = CaptionTokenizer("clip4idc-tiny", 16).training(
        ["the red cube moved", "no change was made", "a tiny blue shiny block has been newly placed", "x"])
    before, after = torch.randn(4, 3, 64, 64), torch.randn(4, 3, 64, 64)
    role = torch.tensor([0, 1, 0, 1])
    full = caption_loss(model(before, after, tok["input_ids"]), tok["target_ids"], tok["target_mask"], role=role)
    real = tok["target_mask"]
    selected = token_loss(model(before, after, tok["input_ids"], positions=real), tok["target_ids"][real],
                          role[:, None].expand_as(real)[real])
    assert torch.allclose(full, selected, atol=1e-5)
