"""The per-epoch training log (dvclive's layout), written anew from the loop's history."""
from __future__ import annotations

import json

from clip4idc.train.live import epoch_metrics, write_training_log

FINETUNE = [{"epoch": 1, "loss": 2.5, "val": {"BLEU-4": 0.1, "CIDEr": 0.4}},
            {"epoch": 2, "loss": 2.0, "val": {"BLEU-4": 0.2, "CIDEr": 0.6}}]
ADAPT = {"epoch": 1, "loss": 3.0, "val": {"n_pairs": 16, "n_texts": 48, "t2p": {"R@1": 8.3, "MedR": 7.5},
                                          "p2t": {"R@1": 6.25}}}


def _tsv(path) -> list[list[str]]:
    return [line.split("\t") for line in path.read_text().splitlines()]


def test_records_flatten_to_dvclive_names_without_set_sizes():
    assert epoch_metrics(FINETUNE[0]) == {"train/loss": 2.5, "val/BLEU-4": 0.1, "val/CIDEr": 0.4}
    assert epoch_metrics(ADAPT) == {"train/loss": 3.0, "val/t2p/R@1": 8.3, "val/t2p/MedR": 7.5,
                                    "val/p2t/R@1": 6.25}


def test_log_has_one_row_per_epoch_numbered_from_one(tmp_path):
    write_training_log(tmp_path / "live", FINETUNE)
    metrics = tmp_path / "live" / "plots" / "metrics"
    assert _tsv(metrics / "train" / "loss.tsv") == [["step", "loss"], ["1", "2.5"], ["2", "2.0"]]
    assert _tsv(metrics / "val" / "CIDEr.tsv") == [["step", "CIDEr"], ["1", "0.4"], ["2", "0.6"]]
    summary = json.loads((tmp_path / "live" / "metrics.json").read_text())
    assert summary["step"] == 2 and summary["val"]["CIDEr"] == 0.6 and summary["train"]["loss"] == 2.0


def test_rewriting_from_a_shorter_history_drops_later_epochs(tmp_path):
    """What a resumed run does: its history comes from the checkpoint, the log follows it."""
    write_training_log(tmp_path / "live", FINETUNE)
    write_training_log(tmp_path / "live", FINETUNE[:1])
    loss = tmp_path / "live" / "plots" / "metrics" / "train" / "loss.tsv"
    assert _tsv(loss) == [["step", "loss"], ["1", "2.5"]]
    write_training_log(tmp_path / "live", [])
    assert not loss.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["live"]  # no temporary folder left behind
