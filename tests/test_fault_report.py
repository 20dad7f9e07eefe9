"""Outputs that belong together land together (`io.atomic_paths`, the report's tables, figures and summary):
all are replaced, or none is, and a failure says which file in one line."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from clip4idc import io
from clip4idc.errors import OutputError


def _old_outputs(tmp_path: Path) -> tuple[Path, Path, Path]:
    plots, tables, summary = tmp_path / "plots", tmp_path / "tables.tex", tmp_path / "ablation.json"
    plots.mkdir()
    (plots / "old.png").write_text("old figure")
    tables.write_text("old tables")
    summary.write_text("old summary")
    return plots, tables, summary


def _write_new(temps: list[Path]) -> None:
    figures, tables, summary = temps
    figures.mkdir()
    (figures / "new.png").write_text("new figure")
    tables.write_text("new tables")
    summary.write_text("new summary")


def refuse_replacing(monkeypatch, target: Path) -> None:
    """Renaming `target` or onto it fails as it does for an immutable file (chattr +i): EPERM."""
    replace = os.replace

    def guarded(src, dst):
        if target in (Path(src), Path(dst)):
            raise PermissionError(1, "Operation not permitted", str(target))
        replace(src, dst)
    monkeypatch.setattr(io.os, "replace", guarded)


def test_all_outputs_are_replaced_together(tmp_path):
    plots, tables, summary = _old_outputs(tmp_path)
    with io.atomic_paths(plots, tables, summary) as temps:
        _write_new(temps)
    assert [p.name for p in plots.iterdir()] == ["new.png"]
    assert tables.read_text() == "new tables" and summary.read_text() == "new summary"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ablation.json", "plots", "tables.tex"]


@pytest.mark.parametrize("failing", ["plots", "tables.tex", "ablation.json"])
def test_one_output_that_cannot_be_replaced_leaves_every_old_one(tmp_path, monkeypatch, failing):
    plots, tables, summary = _old_outputs(tmp_path)
    refuse_replacing(monkeypatch, tmp_path / failing)
    with pytest.raises(OutputError, match=rf"cannot write {tmp_path / failing} \(Operation not permitted\); "
                                          r"nothing of .* was replaced"):
        with io.atomic_paths(plots, tables, summary) as temps:
            _write_new(temps)
    assert [p.name for p in plots.iterdir()] == ["old.png"]
    assert tables.read_text() == "old tables" and summary.read_text() == "old summary"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ablation.json", "plots", "tables.tex"]   # no temporaries


def test_a_failure_while_writing_leaves_the_old_outputs_and_no_temporaries(tmp_path):
    plots, tables, summary = _old_outputs(tmp_path)
    with pytest.raises(KeyError):
        with io.atomic_paths(plots, tables, summary) as (figures, new_tables, _):
            figures.mkdir()
            new_tables.write_text("half")
            raise KeyError("a missing input")
    assert tables.read_text() == "old tables" and [p.name for p in plots.iterdir()] == ["old.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ablation.json", "plots", "tables.tex"]
