from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from clip4idc import params

REPO = Path(__file__).resolve().parents[1]
RAW = yaml.safe_load((REPO / "params.yaml").read_text())


def test_repository_params_validate_under_every_profile():
    for name in RAW["profiles"]:
        p = params.resolve(copy.deepcopy(RAW), name)
        assert p.profile == name


def test_unknown_key_is_named():
    raw = copy.deepcopy(RAW)
    raw["adapt"]["optim"]["learning_rate"] = 1.0
    with pytest.raises(params.ParamsError, match=r"adapt\.optim\.learning_rate: unknown key"):
        params.resolve(raw)


def test_mistyped_value_is_named():
    raw = copy.deepcopy(RAW)
    raw["finetune"]["epochs"] = "8"
    with pytest.raises(params.ParamsError, match=r"finetune\.epochs"):
        params.resolve(raw)


def test_pyyaml_exponent_without_dot_is_rejected_not_coerced():
    # PyYAML reads 1e-4 as a string; strict validation must refuse it rather than guess.
    text = (REPO / "params.yaml").read_text()
    written = re.search(r"\n    lr: (\d)\.0e-(\d)", text)
    assert written, "params.yaml should write an optimiser lr as d.0e-d"
    raw = yaml.safe_load(text.replace(written.group(0), f"\n    lr: {written.group(1)}e-{written.group(2)}", 1))
    with pytest.raises(params.ParamsError, match=r"optim\.lr"):
        params.resolve(raw)


def test_missing_section_is_named():
    raw = copy.deepcopy(RAW)
    del raw["decode"]
    with pytest.raises(params.ParamsError, match=r"decode: required key is missing"):
        params.resolve(raw)


def test_profile_overrides_only_existing_keys():
    raw = copy.deepcopy(RAW)
    raw["profiles"]["bad"] = {"decode": {"beam": 3}}
    with pytest.raises(params.ParamsError, match=r"profiles\.bad\.decode\.beam"):
        params.resolve(raw, "bad")


def test_profile_overrides_apply():
    p = params.resolve(copy.deepcopy(RAW), "smoke")
    base = params.resolve(copy.deepcopy(RAW), "embedded")
    assert p.synthesize.n_train < base.synthesize.n_train
    assert p.model == base.model  # the smoke profile shrinks data and epochs, not the method


def test_unknown_profile_lists_known_ones():
    with pytest.raises(params.ParamsError, match="known"):
        params.resolve(copy.deepcopy(RAW), "nope")


def test_decode_longer_than_model_tokens_is_refused():
    raw = copy.deepcopy(RAW)
    raw["decode"]["max_len"] = raw["model"]["max_tokens"] + 1
    with pytest.raises(params.ParamsError, match="decode.max_len"):
        params.resolve(raw)


def test_standardised_tokens_with_a_trainable_pair_encoder_are_refused_at_load():
    """Said when params load: under the paper profile fine-tuning would otherwise start hours later, then stop."""
    raw = copy.deepcopy(RAW)
    raw["profiles"]["paper"]["finetune"]["standardize_tokens"] = True
    with pytest.raises(params.ParamsError, match=r"standardize_tokens.*pair_encoder"):
        params.resolve(raw, "paper")
    embedded = copy.deepcopy(RAW)
    embedded["finetune"]["freeze"] = ["pair_encoder"]   # a prefix of every pair-encoder name: frozen whole
    assert params.resolve(embedded).finetune.standardize_tokens
    embedded["finetune"]["freeze"] = ["pair_encoder.visual."]   # the new pair parameters would train
    with pytest.raises(params.ParamsError, match="standardize_tokens"):
        params.resolve(embedded)


def test_snakemake_config_may_only_switch_profile(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(RAW))
    ok = params.from_snakemake_config({**copy.deepcopy(RAW), "profile": "smoke"}, path)
    assert ok.profile == "smoke"
    changed = copy.deepcopy(RAW)
    changed["decode"]["max_len"] = 3
    with pytest.raises(params.ParamsError, match="decode"):
        params.from_snakemake_config(changed, path)


def test_missing_params_file_is_named(tmp_path):
    with pytest.raises(params.ParamsError, match="does not exist"):
        params.load(tmp_path / "nope.yaml")


# -- datasets, their overrides, the paper profile --------------------------------------------------
def test_paper_profile_is_the_papers_setting_on_three_datasets():
    p = params.resolve(copy.deepcopy(RAW), "paper")
    assert p.datasets == ("clevr_change", "spot_the_diff", "ier")
    assert all(p.data[d].source == "download" for d in p.datasets)
    assert (p.model.arch, p.model.pretrained, p.model.intra_layers, p.model.max_tokens) == \
        ("ViT-B-32-quickgelu", "openai", 9, 32)
    assert (p.adapt.optim.lr, p.adapt.optim.coef_lr, p.adapt.batch_size, p.adapt.epochs) == (1.0e-4, 1.0e-3, 128, 12)
    assert (p.finetune.optim.lr, p.finetune.optim.coef_lr, p.finetune.coef_lr_tied) == (1.0e-4, 1.0e-3, None)
    assert (p.finetune.epochs, p.finetune.patience, p.finetune.batch_size) == (50, 10, 16)
    # Every pair's tokens as they are, every no-change pair trained on: the authors' captioning loss.
    assert (p.finetune.standardize_tokens, p.finetune.no_change_p) == (False, 1.0)
    assert p.prepare.image_size == 224 and p.decode.max_len == 32


def test_dataset_overrides_apply_after_the_profile():
    clevr = params.resolve(copy.deepcopy(RAW), "paper", dataset="clevr_change")
    spot = params.resolve(copy.deepcopy(RAW), "paper", dataset="spot_the_diff")
    assert (clevr.adapt.epochs, clevr.adapt.distractor_swap_p) == (12, 0.5)
    assert (spot.adapt.epochs, spot.adapt.distractor_swap_p) == (20, 0.0)   # PAPER.md section 3; no distractors
    assert spot.dataset == "spot_the_diff"
    # The authors leave the token embedding trainable in fine-tuning for Spot-the-Diff only.
    assert set(clevr.finetune.freeze) - set(spot.finetune.freeze) == {"captioner.token_embedding."}
    assert spot.finetune.model_copy(update={"freeze": clevr.finetune.freeze}) == clevr.finetune


def test_dataset_override_typos_are_named_even_when_not_resolving_that_dataset():
    raw = copy.deepcopy(RAW)
    raw["profiles"]["paper"]["data"]["ier"]["overrides"]["adapt"]["epoch"] = 3
    with pytest.raises(params.ParamsError, match=r"data\.ier\.overrides\.adapt\.epoch"):
        params.resolve(raw, "paper")


@pytest.mark.parametrize("overrides, message", [({"model": {"intra_layers": 2}}, "may set only"),
                                                ({"seeds": [1]}, "may set only")])
def test_dataset_overrides_may_not_change_shared_weights_or_the_dag(overrides, message):
    raw = copy.deepcopy(RAW)
    raw["data"]["clevr_synth"]["overrides"] = overrides
    with pytest.raises(params.ParamsError, match=message):
        params.resolve(raw)


def test_datasets_must_be_known_and_listed_once():
    raw = copy.deepcopy(RAW)
    raw["datasets"] = ["clevr_synth", "clevr_synth"]
    with pytest.raises(params.ParamsError, match="listed once"):
        params.resolve(raw)
    raw["datasets"] = ["coco"]
    with pytest.raises(params.ParamsError, match="known"):
        params.resolve(raw)


@pytest.mark.parametrize("entry, message", [
    ({"name": "a.zip", "url": "http://x/a.zip", "gdrive": "abc"}, "exactly one of"),
    ({"name": "a.zip", "url": "http://x/a.zip", "sha256": "ABC"}, "64 lower-case hex"),
    ({"name": "../a.zip", "url": "http://x/a.zip"}, "relative path inside"),
    ({"name": "a.zip", "url": "http://x/a.zip", "unpack": "/abs"}, "relative path inside"),
])
def test_download_entries_are_checked(entry, message):
    raw = copy.deepcopy(RAW)
    raw["data"]["clevr_change"]["files"] = [entry]
    with pytest.raises(params.ParamsError, match=message):
        params.resolve(raw)
