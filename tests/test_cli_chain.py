"""Every stage through the CLI, in order, on the smoke profile; the report's numbers are the metric files'."""
from __future__ import annotations

import json
import re
import shutil
from functools import partial
from pathlib import Path

import pytest
import yaml

from clip4idc import cli
from clip4idc.metrics.caption import METRIC_KEYS
from clip4idc.params import VARIANTS
from clip4idc.report.tables import RELEASED_LABEL
from test_fault_report import refuse_replacing

# Slow: every stage of the smoke DAG, in process. Java scores captions (evaluate, and finetune's
# selection); pdflatex compiles the tables.
pytestmark = [pytest.mark.slow, pytest.mark.needs_java, pytest.mark.needs_pdflatex]
REPO = Path(__file__).resolve().parents[1]
SEED = 7


DATASET = "clevr_synth"


def _run(params: Path, stage: str, *args: str) -> None:
    dataset = [] if stage in ("pretrain", "report", "tables-pdf") else ["--dataset", DATASET]
    assert cli.main([stage, *dataset, *args, "--params", str(params), "--profile", "smoke", "--no-progress"]) == 0


@pytest.fixture(scope="module")
def chain(tmp_path_factory) -> Path:
    """The pipeline's folders, written stage by stage through the CLI, for one seed (SEED)."""
    d = tmp_path_factory.mktemp("chain")
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["seeds"] = [SEED]
    (d / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    run = partial(_run, d / "params.yaml")
    raw_dir, prep, clip = d / "data/raw" / DATASET, d / "data/prepared" / DATASET, d / "clip.pt"
    metrics, train, preds = (d / "results" / kind / DATASET for kind in ("metrics", "train", "predictions"))
    run("fetch", "--out", str(raw_dir), "--downloads", str(d / "downloads"))
    run("prepare", "--raw", str(raw_dir), "--out", str(prep))
    run("pretrain", "--data", str(prep), "--out", str(clip), "--log", str(d / "pretrain.json"))
    run("adapt", "--data", str(prep), "--clip", str(clip), "--out", str(d / "adapt.pt"),
        "--metrics", str(metrics / "adapt_retrieval.json"), "--log", str(train / "adapt.json"),
        "--live", str(d / "live" / "adapt"))
    for variant in VARIANTS:
        init = ["--adapted", str(d / "adapt.pt")] if variant == "adapt" else ["--clip", str(clip)]
        ckpt = d / "models" / variant / f"seed{SEED}.pt"
        pred = preds / variant / f"seed{SEED}.json"
        run("finetune", "--data", str(prep), "--variant", variant, "--seed", str(SEED), *init,
            "--out", str(ckpt), "--log", str(train / "finetune" / variant / f"seed{SEED}.json"),
            "--live", str(d / "live" / variant))
        run("decode", "--data", str(prep), "--checkpoint", str(ckpt), "--out", str(pred))
        run("evaluate", "--data", str(prep), "--predictions", str(pred), "--variant", variant,
            "--seed", str(SEED), "--out", str(metrics / variant / f"seed{SEED}.json"))
    run("baseline", "--data", str(prep), "--out", str(preds / "constant.json"))
    run("evaluate", "--data", str(prep), "--predictions", str(preds / "constant.json"),
        "--variant", "constant", "--out", str(metrics / "constant.json"))
    run("analyze", "--data", str(prep), "--predictions-dir", str(preds), "--out", str(d / "results/analysis" / DATASET))
    return d


def _report(chain: Path, out: Path) -> list[str]:
    return ["report", "--metrics-dir", str(chain / "results/metrics"), "--train-dir", str(chain / "results/train"),
            "--predictions-dir", str(chain / "results/predictions"), "--prepared-dir", str(chain / "data/prepared"),
            "--raw-dir", str(chain / "data/raw"), "--analysis-dir", str(chain / "results/analysis"),
            "--tables", str(out / "tables.tex"), "--plots", str(out / "plots"),
            "--summary", str(out / "ablation.json")]


def test_every_stage_writes_its_outputs(chain):
    refs = json.loads((chain / "data/prepared" / DATASET / "references" / "test.json").read_text())
    metrics_dir = chain / "results/metrics" / DATASET
    for variant in VARIANTS:
        pred = json.loads((chain / "results/predictions" / DATASET / variant / f"seed{SEED}.json").read_text())
        assert set(pred) == set(refs) and all(isinstance(c, str) for c in pred.values())
        metrics = json.loads((metrics_dir / variant / f"seed{SEED}.json").read_text())
        assert metrics["variant"] == variant and metrics["seed"] == SEED
        assert set(metrics["metrics"]) == {"BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr"}
        subsets = metrics["subsets"]  # CLEVR-Change-format data: change / no-change only and per type
        assert {"change", "no-change"} <= set(subsets) and len(subsets) > 2
        assert subsets["change"]["n_pairs"] + subsets["no-change"]["n_pairs"] == len(refs)
        # params.yaml asks for SPICE; without CoreNLP here it is skipped, and the file says why.
        assert "SPICE" in metrics["skipped"] or "SPICE" in metrics["metrics"]
        history = json.loads((chain / "results/train" / DATASET / "finetune" / variant / f"seed{SEED}.json").read_text())
        loss = (chain / "live" / variant / "plots/metrics/train/loss.tsv").read_text().splitlines()
        assert loss[1:] == [f"{h['epoch']}\t{h['loss']}" for h in history["history"]]
    retrieval = json.loads((metrics_dir / "adapt_retrieval.json").read_text())
    assert {"t2p", "p2t"} <= set(retrieval) and retrieval["split"] == "test"


def test_report_numbers_are_the_metric_files_numbers(chain, tmp_path):
    _run(chain / "params.yaml", *_report(chain, tmp_path))
    tex = (tmp_path / "tables.tex").read_text()
    for kind in ("ablation", "training", "retrieval", "per_type", "qualitative", "confusion", "failures"):
        assert (tmp_path / "plots" / f"{kind}-{DATASET}.png").stat().st_size > 0
        assert (tmp_path / "plots" / f"{kind}-{DATASET}.pdf").read_bytes().startswith(b"%PDF")
    assert r"\label{tab:ablation:clevr_synth}" in tex and r"\label{tab:pertype:clevr_synth}" in tex
    assert r"\label{tab:failures:clevr_synth}" in tex and r"\label{tab:attributes:clevr_synth}" in tex
    assert "% No paired test" in tex  # one seed: no test, and the file says so
    ablation = tex.split(r"\label{tab:ablation:clevr_synth}")[1].split(r"\end{table}")[0]
    printed = [float(x) for x in re.findall(r"(?<![\w.])(\d+\.\d{2})(?![\d])", ablation)]
    expected = []
    for name in [*VARIANTS, "constant"]:
        path = chain / "results/metrics" / DATASET / (f"{name}/seed{SEED}.json" if name != "constant" else "constant.json")
        m = json.loads(path.read_text())["metrics"]
        expected += [round(100 * m[k], 2) for k in ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr")]
    assert printed == pytest.approx(expected, abs=0.006)
    summary = json.loads((tmp_path / "ablation.json").read_text())[DATASET]
    assert summary["adapt"]["n_seeds"] == 1 and "sd" not in summary["adapt"]
    _run(chain / "params.yaml", "tables-pdf", "--tables", str(tmp_path / "tables.tex"), "--out", str(tmp_path / "t.pdf"))
    assert (tmp_path / "t.pdf").read_bytes().startswith(b"%PDF")


def test_report_refuses_a_missing_metric_file(chain, tmp_path, capsys):
    raw = yaml.safe_load((chain / "params.yaml").read_text())
    raw["seeds"] = [SEED, 999]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    assert cli.main([*_report(chain, tmp_path), "--params", str(tmp_path / "params.yaml"), "--profile", "smoke"]) == 1
    assert "seed999" in capsys.readouterr().err
    assert not (tmp_path / "tables.tex").exists() and not (tmp_path / "ablation.json").exists()
    assert not (tmp_path / "plots").exists()  # no figure of a report that could not be made


def test_decode_uses_the_checkpoint_alone(chain, tmp_path):
    """A fine-tuned checkpoint describes itself: decoding it again gives the same captions."""
    from clip4idc.stages.decode import decode_split
    out = tmp_path / "again.json"
    decode_split(chain / "models" / "adapt" / f"seed{SEED}.pt", chain / "data/prepared" / DATASET, "test", out,
                 max_len=8, batch_size=16, progress=False)
    assert json.loads(out.read_text()) == json.loads((chain / "results/predictions" / DATASET / "adapt" / f"seed{SEED}.json").read_text())


def test_beam_search_decoding_through_the_stage(chain, tmp_path):
    from clip4idc.stages.decode import decode_split
    out = tmp_path / "beam.json"
    beam = decode_split(chain / "models" / "adapt" / f"seed{SEED}.pt", chain / "data/prepared" / DATASET, "test", out,
                        max_len=8, batch_size=16, beam_size=3, progress=False)
    assert set(beam) == set(json.loads((chain / "data/prepared" / DATASET / "references" / "test.json").read_text()))
    assert json.loads(out.read_text()) == beam


def test_finetune_adapt_requires_the_adaptation_checkpoint(chain):
    with pytest.raises(SystemExit, match="--adapted"):
        _run(chain / "params.yaml", "finetune", "--data", str(chain / "data/prepared" / DATASET), "--variant", "adapt", "--seed", "1",
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
    assert "-S 'released=[clevr_change,spot_the_diff]'" in err


def test_a_report_that_fails_late_leaves_no_figures(chain, tmp_path, capsys):
    """Captions are read after four figures are drawn: a missing file there must not leave those four."""
    args = _report(chain, tmp_path)
    args[args.index("--predictions-dir") + 1] = str(tmp_path / "no-predictions")
    assert cli.main([*args, "--params", str(chain / "params.yaml"), "--profile", "smoke"]) == 1
    assert "prediction file(s) missing" in capsys.readouterr().err
    assert not (tmp_path / "plots").exists() and not (tmp_path / "tables.tex").exists()
    assert [p.name for p in tmp_path.iterdir()] == []  # no temporary folder left either


def test_a_report_that_cannot_replace_one_output_keeps_the_old_report_whole(chain, tmp_path, capsys, monkeypatch):
    """Issue 15: an output that cannot be replaced (an immutable ablation.json) must not leave new figures and
    tables beside the old summary: the old report stays whole, and the error is one line naming the file."""
    out = tmp_path / "out"
    args = _report(chain, out)
    assert cli.main([*args, "--params", str(chain / "params.yaml"), "--profile", "smoke", "--no-progress"]) == 0
    old = {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    raw = yaml.safe_load((chain / "params.yaml").read_text())
    raw["data"][DATASET]["label"] = "Relabelled data"   # every table and figure of a new report differs
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    params = ["--params", str(tmp_path / "params.yaml"), "--profile", "smoke", "--no-progress"]
    capsys.readouterr()
    with monkeypatch.context() as m:
        refuse_replacing(m, out / "ablation.json")
        assert cli.main([*args, *params]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: cannot write {out / 'ablation.json'} (Operation not permitted); nothing of "
                   f"{out / 'plots'}, {out / 'tables.tex'}, {out / 'ablation.json'} was replaced"]
    assert {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()} == old
    assert sorted(p.name for p in out.iterdir()) == ["ablation.json", "plots", "tables.tex"]
    assert cli.main([*args, *params]) == 0 and "Relabelled data" in (out / "tables.tex").read_text()


def test_report_prints_the_released_weights_rows_from_their_files(chain, tmp_path, capsys):
    """With the dataset in `released`, the report reads released.json and released_retrieval.json (here copies of
    the adapt variant's files under the released weights' names) and prints them beside the reproduction; one
    missing is an error naming it."""
    raw = yaml.safe_load((chain / "params.yaml").read_text())
    raw["released"] = [DATASET]
    raw["data"][DATASET]["released"] = raw["data"]["clevr_change"]["released"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    metrics = tmp_path / "metrics"
    shutil.copytree(chain / "results/metrics", metrics)
    args = _report(chain, tmp_path)
    args[args.index("--metrics-dir") + 1] = str(metrics)
    params = ["--params", str(tmp_path / "params.yaml"), "--profile", "smoke", "--no-progress"]
    assert cli.main([*args, *params]) == 1
    assert "released.json" in capsys.readouterr().err and not (tmp_path / "tables.tex").exists()

    adapt = json.loads((metrics / DATASET / "adapt" / f"seed{SEED}.json").read_text())
    (metrics / DATASET / "released.json").write_text(json.dumps({**adapt, "variant": "released", "seed": None}))
    shutil.copyfile(metrics / DATASET / "adapt_retrieval.json", metrics / DATASET / "released_retrieval.json")
    analysis = tmp_path / "analysis"
    shutil.copytree(chain / "results/analysis", analysis)
    args[args.index("--analysis-dir") + 1] = str(analysis)
    assert cli.main([*args, *params]) == 1
    assert "released.json" in capsys.readouterr().err and not (tmp_path / "tables.tex").exists()
    adapt_analysis = json.loads((analysis / DATASET / "adapt" / f"seed{SEED}.json").read_text())
    (analysis / DATASET / "released.json").write_text(json.dumps({**adapt_analysis, "variant": "released",
                                                                  "seed": None}))
    assert cli.main([*args, *params]) == 0
    tex = (tmp_path / "tables.tex").read_text()
    row = next(line for line in tex.splitlines() if line.startswith(RELEASED_LABEL))
    assert row.split(" & ")[1:] == [f"{100 * adapt['metrics'][k]:.2f}" for k in METRIC_KEYS[:-1]] + [
        f"{100 * adapt['metrics']['CIDEr']:.2f} \\\\"]
    assert tex.count(RELEASED_LABEL) == 3   # the published, the retrieval and the failure table
    summary = json.loads((tmp_path / "ablation.json").read_text())[DATASET]
    assert summary["released"]["mean"] == {k: adapt["metrics"][k] for k in METRIC_KEYS}
