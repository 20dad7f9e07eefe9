"""Every stage through the CLI, in order, on the smoke profile; the report's numbers are the metric files'."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from clip4idc import cli
from clip4idc.params import VARIANTS

REPO = Path(__file__).resolve().parents[1]
SEED = 7


DATASET = "clevr_synth"


def _run(stage: str, *args: str) -> None:
    dataset = [] if stage in ("pretrain", "report") else ["--dataset", DATASET]
    assert cli.main([stage, *dataset, *args, "--params", str(REPO / "params.yaml"), "--profile", "smoke",
                     "--no-progress"]) == 0


@pytest.fixture(scope="module")
def chain(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("chain")
    raw, prep, clip = d / "raw", d / "prep", d / "clip.pt"
    _run("fetch", "--out", str(raw), "--downloads", str(d / "downloads"))
    _run("prepare", "--raw", str(raw), "--out", str(prep))
    _run("pretrain", "--data", str(prep), "--out", str(clip), "--log", str(d / "pretrain.json"))
    _run("adapt", "--data", str(prep), "--clip", str(clip), "--out", str(d / "adapt.pt"),
         "--metrics", str(d / "metrics" / "adapt_retrieval.json"), "--log", str(d / "adapt.json"))
    for variant in VARIANTS:
        init = ["--adapted", str(d / "adapt.pt")] if variant == "adapt" else ["--clip", str(clip)]
        ckpt = d / "models" / variant / f"seed{SEED}.pt"
        pred = d / "predictions" / variant / f"seed{SEED}.json"
        _run("finetune", "--data", str(prep), "--variant", variant, "--seed", str(SEED), *init,
             "--out", str(ckpt), "--log", str(d / "train" / variant / f"seed{SEED}.json"))
        _run("decode", "--data", str(prep), "--checkpoint", str(ckpt), "--out", str(pred))
        _run("evaluate", "--data", str(prep), "--predictions", str(pred), "--variant", variant,
             "--seed", str(SEED), "--out", str(d / "metrics" / variant / f"seed{SEED}.json"))
    _run("baseline", "--data", str(prep), "--out", str(d / "predictions" / "constant.json"))
    _run("evaluate", "--data", str(prep), "--predictions", str(d / "predictions" / "constant.json"),
         "--variant", "constant", "--out", str(d / "metrics" / "constant.json"))
    return d


def test_every_stage_writes_its_outputs(chain):
    refs = json.loads((chain / "prep" / "references" / "test.json").read_text())
    for variant in VARIANTS:
        pred = json.loads((chain / "predictions" / variant / f"seed{SEED}.json").read_text())
        assert set(pred) == set(refs) and all(isinstance(c, str) for c in pred.values())
        metrics = json.loads((chain / "metrics" / variant / f"seed{SEED}.json").read_text())
        assert metrics["variant"] == variant and metrics["seed"] == SEED
        assert set(metrics["metrics"]) == {"BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr"}
        subsets = metrics["subsets"]  # CLEVR-Change-format data: change / no-change only and per type
        assert {"change", "no-change"} <= set(subsets) and len(subsets) > 2
        assert subsets["change"]["n_pairs"] + subsets["no-change"]["n_pairs"] == len(refs)
    retrieval = json.loads((chain / "metrics" / "adapt_retrieval.json").read_text())
    assert {"t2p", "p2t"} <= set(retrieval) and retrieval["split"] == "test"


def test_report_numbers_are_the_metric_files_numbers(chain, monkeypatch, tmp_path):
    # The smoke profile trains seed 2021; this chain trained SEED: give the report params that say so.
    from clip4idc.params import load
    from clip4idc.report.build import build_report
    params = load(REPO / "params.yaml", "smoke")
    params = params.model_copy(update={"finetune": params.finetune.model_copy(update={"seeds": (SEED,)})})
    tree = tmp_path / "by_dataset"
    tree.mkdir()
    (tree / DATASET).symlink_to(chain / "metrics")
    build_report(params, tree, tmp_path / "tables.tex", tmp_path / "plots")
    tex = (tmp_path / "tables.tex").read_text()
    assert (tmp_path / "plots" / f"ablation-{DATASET}.png").stat().st_size > 0
    assert (tmp_path / "plots" / f"ablation-{DATASET}.pdf").read_bytes().startswith(b"%PDF")
    assert r"\label{tab:ablation:clevr_synth}" in tex
    ablation = tex.split(r"\end{table}")[0]
    printed = [float(x) for x in re.findall(r"(?<![\w.])(\d+\.\d{2})(?![\d])", ablation)]
    expected = []
    for name in [*VARIANTS, "constant"]:
        path = chain / "metrics" / (f"{name}/seed{SEED}.json" if name != "constant" else "constant.json")
        m = json.loads(path.read_text())["metrics"]
        expected += [round(100 * m[k], 2) for k in ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr")]
    assert printed == pytest.approx(expected, abs=0.006)


def test_report_refuses_a_missing_metric_file(chain, tmp_path):
    from clip4idc.params import load
    from clip4idc.report.build import build_report
    params = load(REPO / "params.yaml", "smoke")
    params = params.model_copy(update={"finetune": params.finetune.model_copy(update={"seeds": (SEED, 999)})})
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / DATASET).symlink_to(chain / "metrics")
    with pytest.raises(FileNotFoundError, match="seed999"):
        build_report(params, tmp_path / "m", tmp_path / "t.tex", tmp_path / "p")
    assert not (tmp_path / "t.tex").exists()


def test_decode_uses_the_checkpoint_alone(chain, tmp_path):
    """A fine-tuned checkpoint describes itself: decoding it again gives the same captions."""
    from clip4idc.predict import decode_split
    out = tmp_path / "again.json"
    decode_split(chain / "models" / "adapt" / f"seed{SEED}.pt", chain / "prep", "test", out,
                 max_len=8, batch_size=16, progress=False)
    assert json.loads(out.read_text()) == json.loads((chain / "predictions" / "adapt" / f"seed{SEED}.json").read_text())


def test_beam_search_decoding_through_the_stage(chain, tmp_path):
    from clip4idc.predict import decode_split
    out = tmp_path / "beam.json"
    beam = decode_split(chain / "models" / "adapt" / f"seed{SEED}.pt", chain / "prep", "test", out,
                        max_len=8, batch_size=16, beam_size=3, progress=False)
    assert set(beam) == set(json.loads((chain / "prep" / "references" / "test.json").read_text()))
    assert json.loads(out.read_text()) == beam


def test_finetune_adapt_requires_the_adaptation_checkpoint(chain):
    with pytest.raises(SystemExit, match="--adapted"):
        _run("finetune", "--data", str(chain / "prep"), "--variant", "adapt", "--seed", "1",
             "--clip", str(chain / "clip.pt"), "--out", str(chain / "x.pt"), "--log", str(chain / "x.json"))
    assert not (chain / "x.pt").exists()


def test_bad_params_exit_with_the_key_named(tmp_path, capsys):
    bad = tmp_path / "params.yaml"
    bad.write_text((REPO / "params.yaml").read_text().replace("  max_len: 24", "  max_length: 24"))
    assert cli.main(["decode", "--dataset", DATASET, "--params", str(bad), "--data", "x", "--checkpoint", "y",
                     "--out", "z"]) == 2
    assert "decode.max_length: unknown key" in capsys.readouterr().err


def test_a_dataset_outside_the_profile_is_refused_with_the_dvc_fix(capsys):
    """Under DVC the DAG's shape comes from the top level: a mismatch must stop, saying how to fix it."""
    args = ["--params", str(REPO / "params.yaml"), "--data", "x", "--out", "z"]
    assert cli.main(["baseline", "--dataset", DATASET, "--profile", "paper", *args]) == 2
    err = capsys.readouterr().err
    assert "not one this profile runs" in err and "-S 'datasets=[clevr_change,spot_the_diff,ier]'" in err
