"""`clip4idc tables-pdf`: results/tables.pdf, the tables fragment compiled with pdflatex, for reading
and for the Snakemake report.

The fragment (`results/tables.tex`) is what a paper `\\input{}`s; this wraps it in the smallest
document that holds its packages and runs pdflatex twice in a scratch folder (the second run settles
float placement), then moves the PDF into place. pdflatex is a system tool (TeX Live), not a Python
package: where it is missing the stage stops with how to install it.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from ..io import atomic_path

HELP = "compile the tables fragment with pdflatex"
PARAMS = ()  # reads no params: its one input is the fragment
# Every package the fragment needs (report/tables.py HEADER lists them for the reader of the .tex).
PREAMBLE = (r"\documentclass[10pt]{article}" "\n"
            r"\usepackage[margin=2cm]{geometry}" "\n"
            r"\usepackage{booktabs}" "\n"
            r"\usepackage{graphicx}" "\n")
INSTALL_HINT = "Debian/Ubuntu: apt-get install texlive-latex-base texlive-latex-recommended"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tables", required=True, help="the report's LaTeX fragment")
    p.add_argument("--out", required=True, help="PDF to write")


def run(args: argparse.Namespace, params) -> None:
    compile_tables(args.tables, args.out)


def document(tables_tex: str | os.PathLike) -> str:
    """A complete LaTeX document that \\input{}s `tables_tex` (an absolute path)."""
    path = Path(tables_tex).resolve().as_posix()
    return (PREAMBLE + r"\begin{document}" "\n" + rf"\input{{{path}}}" "\n" + r"\end{document}" "\n")


def compile_tables(tables_tex: str | os.PathLike, out_pdf: str | os.PathLike, *, timeout: int = 120) -> Path:
    """Compile `tables_tex` into `out_pdf`; a failure raises with the end of pdflatex's log."""
    tables_tex = Path(tables_tex)
    if not tables_tex.is_file():
        raise FileNotFoundError(f"expected the tables fragment at {tables_tex} (written by `clip4idc report`)")
    pdflatex = shutil.which("pdflatex")
    if pdflatex is None:
        raise FileNotFoundError(f"pdflatex is not on PATH; it compiles {tables_tex} into {out_pdf} ({INSTALL_HINT})")
    # A fixed date in the PDF's metadata and trailer id: the same tables give the same bytes.
    env = {**os.environ, "SOURCE_DATE_EPOCH": "0", "FORCE_SOURCE_DATE": "1"}
    with tempfile.TemporaryDirectory(prefix="clip4idc-tables-") as scratch:
        doc = Path(scratch) / "tables.tex"
        doc.write_text(document(tables_tex), encoding="utf-8")
        for _ in range(2):
            proc = subprocess.run([pdflatex, "-interaction=nonstopmode", "-halt-on-error", doc.name],
                                  cwd=scratch, env=env, capture_output=True, text=True, timeout=timeout)
            if proc.returncode != 0:
                log = (Path(scratch) / "tables.log")
                tail = log.read_text(errors="replace")[-3000:] if log.is_file() else proc.stdout[-3000:]
                raise RuntimeError(f"pdflatex could not compile {tables_tex} (exit {proc.returncode}); "
                                   f"end of its log:\n{tail}")
        with atomic_path(out_pdf) as tmp:
            shutil.copyfile(Path(scratch) / "tables.pdf", tmp)
    return Path(out_pdf)
