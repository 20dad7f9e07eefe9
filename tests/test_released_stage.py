"""`clip4idc released`: the authors' released files, placed by hand, through the stage's command line into
checkpoints that `decode` and `clip4idc caption` take; an unreachable Drive, a corrupt file and a file of the
wrong layout each stop it with a short message naming the file.

The files are built in the authors' key layout at a reduced width by tests/test_released.py's builder, and
the stage runs under a params file whose model section is that reduced model (the paper profile's model is
ViT-B/32, whose files would be ~1 GB each).
"""
from __future__ import annotations

import json

import numpy as np
import open_clip
import pytest
import requests
import torch
import yaml

from clip4idc import cli
from clip4idc.data.dataset import PairDataset, Prepared
from clip4idc.data.download import sha256_of
from clip4idc.data.prepare import prepare
from clip4idc.metrics.retrieval import retrieval_metrics
from clip4idc.runtime import load_checkpoint
from clip4idc.text import CaptionTokenizer
from test_released import (ARCH, ARCH_CFG, CAPTIONER, INTRA, authors_state, their_text_feature,
                           their_visual_tokens)
from workflow_helpers import REPO

DATASET = "clevr_synth"
FILES = {"adapt": "pretrained/pytorch_model.bin.clevr", "finetune": "trained/pytorch_model.bin.clevr"}
MAX_TOKENS = 16


@pytest.fixture(scope="module", autouse=True)
def released_arch(tmp_path_factory):
    path = tmp_path_factory.mktemp("arch") / f"{ARCH}.json"
    path.write_text(json.dumps(ARCH_CFG))
    open_clip.add_model_config(path)


@pytest.fixture(scope="module")
def params_file(tmp_path_factory):
    """params.yaml with the released files of the embedded dataset listed as the authors' are for CLEVR-Change,
    `released` naming it, the reduced model, and one download attempt (no backoff waits)."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    clevr = raw["data"]["clevr_change"]["released"]
    raw["data"][DATASET]["released"] = clevr
    assert {kind: clevr[kind]["name"] for kind in FILES} == FILES
    raw["released"] = [DATASET]
    raw["model"].update(arch=ARCH, intra_layers=INTRA, max_tokens=MAX_TOKENS, output_vocab="clip",
                        captioner={**CAPTIONER, "dropout": 0.1})
    raw["decode"]["max_len"] = raw["finetune"]["select_max_len"] = 8
    raw["download"]["retries"] = 1
    path = tmp_path_factory.mktemp("params") / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def prepared(data_synth_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("released") / "prepared"
    prepare(data_synth_root, out, reader="clevr_change", image_size=ARCH_CFG["vision_cfg"]["image_size"],
            empty_references="drop", progress=False)
    return out


def drive_unreachable(monkeypatch):
    def unreachable(*args, **kwargs):   # what gdown raises without network
        raise requests.ConnectionError("drive.google.com unreachable (test)")
    monkeypatch.setattr("gdown.download_folder", unreachable)
    monkeypatch.setattr("gdown.download", unreachable)


def place(downloads, kind: str, state=None):
    """The authors' file of `kind` put by hand where the stage looks for it (torch.save of their state dict)."""
    path = downloads / FILES[kind]
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(authors_state(kind, seed={"adapt": 3, "finetune": 0}[kind]) if state is None else state, path)
    return path


def released(params_file, prepared, root, capsys) -> tuple[int, str]:
    code = cli.main(["released", "--dataset", DATASET, "--downloads", str(root / "downloads"),
                     "--data", str(prepared), "--adapt-out", str(root / "adapt.pt"),
                     "--finetune-out", str(root / "finetune.pt"), "--retrieval", str(root / "retrieval.json"),
                     "--params", str(params_file), "--no-progress"])
    return code, capsys.readouterr().err


def error_lines(err: str) -> list[str]:
    """The lines of the final error message (from the line that starts with `error:`)."""
    lines = err.strip().splitlines()
    start = max(i for i, line in enumerate(lines) if line.startswith("error: "))
    return lines[start:]


def nothing_written(root) -> bool:
    return not any((root / name).exists() for name in ("adapt.pt", "finetune.pt", "retrieval.json"))


@pytest.fixture(scope="module")
def converted(params_file, prepared, tmp_path_factory):
    """Both files placed by hand, Drive unreachable: the stage runs on them alone."""
    root = tmp_path_factory.mktemp("converted")
    placed = {kind: place(root / "downloads", kind) for kind in FILES}
    with pytest.MonkeyPatch.context() as mp:
        drive_unreachable(mp)
        code = cli.main(["released", "--dataset", DATASET, "--downloads", str(root / "downloads"),
                         "--data", str(prepared), "--adapt-out", str(root / "adapt.pt"),
                         "--finetune-out", str(root / "finetune.pt"), "--retrieval", str(root / "retrieval.json"),
                         "--params", str(params_file), "--no-progress"])
    assert code == 0
    return root, placed


def test_placed_files_become_checkpoints_that_decode_and_caption_take(converted, params_file, prepared,
                                                                      data_synth_root, capsys):
    root, placed = converted
    finetune, adapt = load_checkpoint(root / "finetune.pt"), load_checkpoint(root / "adapt.pt")
    assert (finetune["kind"], finetune["variant"], adapt["kind"]) == ("finetune", "adapt", "adapt")
    for kind, ckpt in (("finetune", finetune), ("adapt", adapt)):
        assert ckpt["source"]["sha256"] == sha256_of(placed[kind]) and ckpt["model"]["arch"] == ARCH
    recorded = json.loads((root / "retrieval.json").read_text())["source"]
    assert {k: (v["origin"], v["sha256"]) for k, v in recorded.items()} == {
        kind: ("placed by hand", sha256_of(placed[kind])) for kind in FILES}

    predictions = root / "predictions.json"
    assert cli.main(["decode", "--dataset", DATASET, "--data", str(prepared), "--checkpoint", str(root / "finetune.pt"),
                     "--out", str(predictions), "--params", str(params_file), "--no-progress"]) == 0
    decoded = json.loads(predictions.read_text())
    manifest = Prepared(prepared).manifest("test")
    assert set(decoded) == {m["pair_id"] for m in manifest}
    capsys.readouterr()
    for m in manifest[:2]:
        code = cli.main(["caption", "--checkpoint", str(root / "finetune.pt"), "--max-len", "8", "--no-progress",
                         str(data_synth_root / m["before"]), str(data_synth_root / m["after"])])
        assert (code, capsys.readouterr().out) == (0, decoded[m["pair_id"]] + "\n")


def test_retrieval_is_what_the_authors_model_gives_on_the_test_split(converted, prepared):
    """R@K of the converted adaptation checkpoint equal those of their model's features, restated in
    tests/test_released.py independently of our model code, under the same protocol (metrics/retrieval.py)."""
    root, placed = converted
    result = json.loads((root / "retrieval.json").read_text())
    state = torch.load(placed["adapt"], weights_only=True)
    pairs = PairDataset(Prepared(prepared), "test", changed=True)
    before = torch.stack([pairs[i]["before"] for i in range(len(pairs))])
    after = torch.stack([pairs[i]["after"] for i in range(len(pairs))])
    texts, text_pair = pairs.captions()
    tokens = 1 + (ARCH_CFG["vision_cfg"]["image_size"] // ARCH_CFG["vision_cfg"]["patch_size"]) ** 2
    with torch.no_grad():
        visual = their_visual_tokens(state, before, after, INTRA)
        pair_f = torch.nn.functional.normalize((visual[:, 0] + visual[:, tokens]) / 2, dim=-1)
        ids = CaptionTokenizer(ARCH, MAX_TOKENS).retrieval(texts)
        text_f = torch.nn.functional.normalize(their_text_feature(state, ids), dim=-1)
    theirs = retrieval_metrics((text_f @ pair_f.T).numpy(), np.asarray(text_pair))
    assert (result["split"], result["n_pairs"], result["n_texts"]) == ("test", len(pairs), len(texts))
    for direction in ("t2p", "p2t"):
        assert result[direction] == pytest.approx(theirs[direction]), direction


def test_unreachable_drive_says_which_file_to_place_where(params_file, prepared, tmp_path, monkeypatch, capsys):
    drive_unreachable(monkeypatch)
    code, err = released(params_file, prepared, tmp_path, capsys)
    message = error_lines(err)
    assert code == 1 and "Traceback" not in err and len(message) == 2
    target = (tmp_path / "downloads" / FILES["adapt"]).resolve()
    assert f"could not download {FILES['adapt']}" in message[0]
    assert "https://drive.google.com/drive/folders/1qOYVpZy57clJPF6AThsnO0Tfy4zq-gg1" in message[0]
    assert f"put it at {target}, then run again" in message[1]
    assert nothing_written(tmp_path)
    # The adaptation checkpoint placed, the captioner is the one named next.
    place(tmp_path / "downloads", "adapt")
    code, err = released(params_file, prepared, tmp_path, capsys)
    assert code == 1 and f"put it at {(tmp_path / 'downloads' / FILES['finetune']).resolve()}" in err
    assert nothing_written(tmp_path)


@pytest.mark.parametrize("bad", ["corrupt", "wrong kind", "wrong layout"])
def test_a_bad_released_file_stops_the_stage_with_one_line_naming_it(bad, params_file, prepared, tmp_path,
                                                                     monkeypatch, capsys):
    drive_unreachable(monkeypatch)
    place(tmp_path / "downloads", "adapt")
    path = tmp_path / "downloads" / FILES["finetune"]
    if bad == "corrupt":   # a download cut short, or a web page saved in its place
        place(tmp_path / "downloads", "finetune")
        path.write_bytes(path.read_bytes()[:5000])
    elif bad == "wrong kind":   # the adaptation checkpoint put where the captioner belongs
        place(tmp_path / "downloads", "finetune", authors_state("adapt"))
    else:                  # a key their layout does not have, and one missing
        state = authors_state("finetune")
        state["decoder.pooler.dense.weight"] = state.pop("decoder.embeddings.LayerNorm.bias")
        place(tmp_path / "downloads", "finetune", state)
    code, err = released(params_file, prepared, tmp_path, capsys)
    message = error_lines(err)
    assert code == 1 and "Traceback" not in err
    assert len(message) == 1 and str(path) in message[0]
    if bad == "wrong layout":   # every offending key listed above the one-line error
        assert "decoder.pooler.dense.weight" in err and "decoder.embeddings.LayerNorm.bias" in err
        assert "each problem is listed above" in message[0]
    assert nothing_written(tmp_path)
