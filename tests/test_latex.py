"""results/tables.pdf: the tables fragment compiled with pdflatex (the tables themselves: test_report.py)."""
from __future__ import annotations


import pytest

from clip4idc.stages.tables_pdf import compile_tables

needs_pdflatex = pytest.mark.needs_pdflatex
FRAGMENT = "\n".join([r"\begin{table}[t]\centering\caption{A caption}\begin{tabular}{lr}\toprule",
                      r"Model & CIDEr \\ \midrule CLIP4IDC & 80.27 \\ \bottomrule\end{tabular}\end{table}", ""])


@needs_pdflatex
def test_fragment_compiles_to_the_same_pdf_bytes_twice(tmp_path):
    (tmp_path / "tables.tex").write_text(FRAGMENT)
    first = compile_tables(tmp_path / "tables.tex", tmp_path / "a" / "tables.pdf").read_bytes()
    second = compile_tables(tmp_path / "tables.tex", tmp_path / "b" / "tables.pdf").read_bytes()
    assert first.startswith(b"%PDF") and first == second
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "tables.tex"]  # nothing else left here


@needs_pdflatex
def test_broken_fragment_fails_with_pdflatex_log_and_writes_nothing(tmp_path):
    (tmp_path / "tables.tex").write_text(FRAGMENT.replace(r"\bottomrule", r"\bottomrulez"))
    with pytest.raises(RuntimeError, match=r"(?s)pdflatex could not compile .*tables\.tex.*Undefined control"):
        compile_tables(tmp_path / "tables.tex", tmp_path / "out.pdf")
    assert not (tmp_path / "out.pdf").exists()


def test_missing_pdflatex_or_fragment_are_named(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="expected the tables fragment at .*nothing.tex"):
        compile_tables(tmp_path / "nothing.tex", tmp_path / "out.pdf")
    (tmp_path / "tables.tex").write_text(FRAGMENT)
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH without pdflatex
    with pytest.raises(FileNotFoundError, match="pdflatex is not on PATH.*texlive-latex-base"):
        compile_tables(tmp_path / "tables.tex", tmp_path / "out.pdf")
