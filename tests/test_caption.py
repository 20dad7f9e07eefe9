"""`clip4idc caption`: a pair's caption from its PNGs is the decode stage's caption for it (same tensors,
same decoding), from any folder, without params.yaml; bad input is refused naming the file."""
from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys

import pytest
import torch
from PIL import Image

from clip4idc import cli, deps
from clip4idc.data.dataset import PairDataset, Prepared
from clip4idc.data.prepare import prepare
from clip4idc.models.build import build_caption_model
from clip4idc.params import ModelParams
from clip4idc.runtime import save_checkpoint
from clip4idc.stages import STAGES, TOOLS
from clip4idc.stages.caption import _ImagePairs
from clip4idc.stages.decode import decode_split
from workflow_helpers import REPO

ARCH = "clip4idc-tiny"   # input 64×64
MAX_TOKENS = 8           # the checkpoint's: caption's default --max-len; the smoke profile's decode.max_len too


@pytest.fixture(scope="module")
def prepared(data_synth_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("caption") / "prepared"
    prepare(data_synth_root, out, reader="clevr_change", image_size=64, empty_references="drop", progress=False)
    return out


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A fine-tuned checkpoint as the finetune stage writes it, of a random model made to look at its pair:
    random weights barely do (one caption for every pair), a trained model's captions depend on the pair."""
    cfg = ModelParams.model_validate({"arch": ARCH, "pretrained": "pipeline", "intra_layers": 3,
                                      "max_tokens": MAX_TOKENS, "output_vocab": "clip",
                                      "captioner": {"heads": 4, "ffn": 256, "layers": 3, "dropout": 0.1}})
    torch.manual_seed(0)
    model = build_caption_model("no-adapt", cfg, None)
    with torch.no_grad():
        for layer in model.captioner.decoder:   # sharp cross-attention that outweighs the word embeddings
            layer.cross_attn.out.weight.mul_(30.0)
            layer.cross_attn.query.weight.mul_(3.0)
            layer.cross_attn.key.weight.mul_(3.0)
    path = tmp_path_factory.mktemp("caption") / "seed0.pt"
    save_checkpoint(path, {"kind": "finetune", "variant": "no-adapt", "seed": 0, "state_dict": model.state_dict(),
                           "epoch": 1, "model": cfg.model_dump(mode="json")})
    return path


@pytest.fixture(scope="module")
def decoded(prepared, checkpoint, tmp_path_factory):
    """What the decode stage writes for the test split (smoke profile: decode.max_len 8, greedy)."""
    out = tmp_path_factory.mktemp("caption") / "predictions.json"
    assert cli.main(["decode", "--dataset", "clevr_synth", "--data", str(prepared), "--checkpoint", str(checkpoint),
                     "--out", str(out), "--params", str(REPO / "params.yaml"), "--profile", "smoke",
                     "--no-progress"]) == 0
    predictions = json.loads(out.read_text())
    assert len(set(predictions.values())) > len(predictions) // 2   # captions that tell the pairs apart
    return predictions


@pytest.fixture(scope="module")
def manifest(prepared):
    return Prepared(prepared).manifest("test")


def _caption(capsys, *args) -> tuple[int, str, str]:
    code = cli.main(["caption", *map(str, args), "--no-progress"])
    out, err = capsys.readouterr()
    return code, out, err


def test_caption_is_a_tool_listed_by_help_and_no_stage(capsys):
    assert TOOLS == ("caption",) and "caption" not in STAGES   # no rule, no DVC stage (test_workflow: parity)
    assert "caption" in cli.build_parser().format_help()
    with pytest.raises(SystemExit) as exit_:
        cli.main(["caption", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "usage: clip4idc caption" in out and "--checkpoint" in out and "--params" not in out


def test_a_pair_gets_exactly_the_tensors_and_the_caption_of_the_decode_stage(
        data_synth_root, prepared, checkpoint, decoded, manifest, tmp_path, monkeypatch, capsys):
    pairs = PairDataset(Prepared(prepared), "test")
    tool = _ImagePairs({m["pair_id"]: (data_synth_root / m["before"], data_synth_root / m["after"]) for m in manifest}, 64)
    for i in range(len(manifest)):
        assert torch.equal(tool[i]["before"], pairs[i]["before"]) and torch.equal(tool[i]["after"], pairs[i]["after"])
    monkeypatch.chdir(tmp_path)   # any folder: no params.yaml here
    for m in manifest[:4]:
        code, out, err = _caption(capsys, "--checkpoint", checkpoint, data_synth_root / m["before"],
                                  data_synth_root / m["after"])
        assert (code, out, err) == (0, decoded[m["pair_id"]] + "\n", "")


def _copy_images(root, manifest, folder) -> list[dict]:
    """The test pairs' images copied under `folder`/images: a list the caption tool reads relative to its folder."""
    rows = []
    for m in manifest:
        for which in ("before", "after"):
            (folder / "images" / m[which]).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(root / m[which], folder / "images" / m[which])
        rows.append({"id": m["pair_id"], "before": f"images/{m['before']}", "after": f"images/{m['after']}"})
    return rows


def test_a_list_of_pairs_gets_the_decode_stage_captions(data_synth_root, checkpoint, decoded, manifest, tmp_path,
                                                         capsys):
    rows = _copy_images(data_synth_root, manifest, tmp_path / "list")
    (tmp_path / "list" / "pairs.json").write_text(json.dumps(rows))
    code, _, err = _caption(capsys, "--checkpoint", checkpoint, "--pairs", tmp_path / "list" / "pairs.json",
                            "--out", tmp_path / "out.json", "--batch-size", 3)
    assert (code, err) == (0, "")
    assert json.loads((tmp_path / "out.json").read_text()) == {m["pair_id"]: decoded[m["pair_id"]] for m in manifest}

    # A CSV without ids (ids: positions) and a JSON object {id: [before, after]}, same captions.
    with (tmp_path / "list" / "pairs.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["before", "after"])
        writer.writeheader()
        writer.writerows({"before": r["before"], "after": r["after"]} for r in rows[:3])
    (tmp_path / "list" / "pairs-object.json").write_text(json.dumps({r["id"]: [r["before"], r["after"]]
                                                                     for r in rows[3:5]}))
    for name, expected in (("pairs.csv", {str(i): decoded[m["pair_id"]] for i, m in enumerate(manifest[:3])}),
                           ("pairs-object.json", {m["pair_id"]: decoded[m["pair_id"]] for m in manifest[3:5]})):
        assert _caption(capsys, "--checkpoint", checkpoint, "--pairs", tmp_path / "list" / name,
                        "--out", tmp_path / "out.json")[0] == 0
        assert json.loads((tmp_path / "out.json").read_text()) == expected


def test_beam_search_as_the_decode_stage(data_synth_root, prepared, checkpoint, manifest, tmp_path, capsys):
    beam = decode_split(checkpoint, prepared, "test", tmp_path / "beam.json", max_len=6, batch_size=16, beam_size=3,
                        progress=False)
    (tmp_path / "pairs.json").write_text(json.dumps(_copy_images(data_synth_root, manifest, tmp_path)))
    assert _caption(capsys, "--checkpoint", checkpoint, "--pairs", tmp_path / "pairs.json", "--out",
                    tmp_path / "out.json", "--beam-size", 3, "--max-len", 6)[0] == 0
    assert json.loads((tmp_path / "out.json").read_text()) == beam


def test_any_image_pil_reads_is_converted_as_prepare_does(data_synth_root, checkpoint, decoded, manifest, tmp_path,
                                                           capsys):
    m = manifest[0]
    with Image.open(data_synth_root / m["before"]) as before, Image.open(data_synth_root / m["after"]) as after:
        before.convert("RGBA").save(tmp_path / "before-rgba.png")     # opaque alpha: the same RGB
        after.convert("L").save(tmp_path / "after-grey.png")
        after.resize((90, 70)).save(tmp_path / "after-larger.png")    # before and after of different sizes
    code, out, _ = _caption(capsys, "--checkpoint", checkpoint, tmp_path / "before-rgba.png", data_synth_root / m["after"])
    assert (code, out) == (0, decoded[m["pair_id"]] + "\n")
    for after in ("after-grey.png", "after-larger.png"):
        assert _caption(capsys, "--checkpoint", checkpoint, data_synth_root / m["before"], tmp_path / after)[0] == 0


def _bad_checkpoints(tmp_path, checkpoint):
    finetuned = torch.load(checkpoint, weights_only=True)
    save_checkpoint(tmp_path / "adapt.pt", {"kind": "adapt", "state_dict": {}, "epoch": 1})
    save_checkpoint(tmp_path / "clip.pt", finetuned["state_dict"])   # a bare state dict, as pretrain's clip.pt
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint at all")
    return {"adapt.pt": "is not a fine-tuning checkpoint (kind='adapt')",
            "clip.pt": "is not a fine-tuning checkpoint (kind=None)",
            "garbage.pt": "cannot be read as a checkpoint", "missing.pt": "expected a checkpoint file"}


def test_bad_input_is_refused_naming_the_file_and_nothing_is_written(data_synth_root, checkpoint, manifest, tmp_path,
                                                                      capsys):
    rows = _copy_images(data_synth_root, manifest[:2], tmp_path)
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage, not an image")
    out = tmp_path / "out.json"

    def refused(pairs: list[dict] | str, *expected: str, ckpt=checkpoint, name="pairs.json") -> None:
        (tmp_path / name).write_text(pairs if isinstance(pairs, str) else json.dumps(pairs))
        code, stdout, err = _caption(capsys, "--checkpoint", ckpt, "--pairs", tmp_path / name, "--out", out)
        assert code == 1 and stdout == "" and err.startswith("error: ") and err.count("\n") == 1, err
        assert all(e in err for e in expected), err
        assert not out.exists() and not list(tmp_path.glob(".out.json.*"))

    refused([rows[0], {**rows[1], "after": "images/nowhere.png"}], f"after image of pair {rows[1]['id']!r} is "
            f"missing: {tmp_path / 'images/nowhere.png'}")
    refused([rows[0], {**rows[1], "before": "corrupt.png"}], f"{tmp_path / 'corrupt.png'} cannot be read as an image")
    for name, expected in _bad_checkpoints(tmp_path, checkpoint).items():
        refused(rows, str(tmp_path / name), expected, ckpt=tmp_path / name)
    refused([rows[0], rows[0]], f"pairs.json, item 1: pair id {rows[0]['id']!r} appears twice")
    refused("before,image\na.png,b.png\n", "expected a header with columns before,after", name="pairs.csv")
    refused("{not json", "pairs.json is not valid JSON")

    # One pair: nothing on stdout, the file named.
    code, stdout, err = _caption(capsys, "--checkpoint", checkpoint, tmp_path / "corrupt.png", tmp_path / rows[0]["after"])
    assert (code, stdout) == (1, "") and str(tmp_path / "corrupt.png") in err


def test_captioning_imports_no_training_code(data_synth_root, checkpoint, decoded, manifest, tmp_path):
    """In its own process, from a folder without params.yaml: the caption, and no clip4idc.train module loaded
    (test_stages checks the import closure deps.py derives; this, what a run imports)."""
    assert [f for f in deps.code_files("caption", REPO) if "/train/" in f] == []
    m = manifest[0]
    script = ("import sys; from clip4idc import cli; code = cli.main(sys.argv[1:]); "
              "assert not [n for n in sys.modules if n.startswith('clip4idc.train')], 'training code imported'; "
              "sys.exit(code)")
    done = subprocess.run([sys.executable, "-c", script, "caption", "--checkpoint", str(checkpoint),
                           str(data_synth_root / m["before"]), str(data_synth_root / m["after"])],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout == decoded[m["pair_id"]] + "\n"
