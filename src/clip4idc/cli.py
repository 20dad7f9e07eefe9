"""`clip4idc <stage>`: one console script, a subcommand per pipeline stage (and per tool: `caption`).

A table of the stages only: each lives in `stages/<stage>.py` (named after its Snakemake rule and
DVC stage), which owns its arguments and its work. Every stage takes explicit input and output
paths, so that Snakemake rules and DVC stages call the very same command lines. Values come from
params.yaml (validated on load); nothing here sets a default that changes results. A tool
(`stages.TOOLS`) is no stage: it reads no params.yaml, so it runs in any folder.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from . import params as params_mod
from .errors import (CheckpointConversionError, CheckpointError, DatasetFormatError, DownloadError,
                     ImageDecodeError, OutputError, PairListError, TrainingDivergedError, UnsafeArchiveError,
                     WeightsUnavailableError)
from .stages import STAGES, TOOLS, command

# Bad input (a missing file, a malformed dataset, bad params, the wrong checkpoint, params under which training
# diverges): a message, not a traceback.
INPUT_ERRORS = (FileNotFoundError, ImageDecodeError, DatasetFormatError, params_mod.ParamsError, DownloadError,
                UnsafeArchiveError, CheckpointError, CheckpointConversionError, PairListError, OutputError,
                TrainingDivergedError, WeightsUnavailableError)
COMMANDS = STAGES + TOOLS
# `--debug`, or this set to anything but "" or 0 (for a stage run by Snakemake or DVC, whose command
# lines are fixed): an expected error is raised with its traceback instead of printed as one message.
DEBUG_ENV = "CLIP4IDC_DEBUG"


def stage_module(stage: str):
    """The module of a stage (`tables-pdf` or `tables_pdf` -> clip4idc.stages.tables_pdf)."""
    return importlib.import_module(f"{__package__}.stages.{stage.replace('-', '_')}")


def _common(p: argparse.ArgumentParser, params: bool = True) -> None:
    if params:
        p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
        p.add_argument("--profile", default=None,
                       help="profile to apply from the params file (default: its `profile` key)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads (default: OMP_NUM_THREADS where set, as Snakemake sets it; else the stage's "
                        "execution.resources.<stage>.threads; 0 there, or a tool: all cores)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (they show on a terminal only)")
    # `clip4idc --debug STAGE ...` or `clip4idc STAGE ... --debug`: absent here, the global flag's value stays.
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def build_parser(stages=COMMANDS) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clip4idc", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true",
                        help=f"bad input or params: raise the error with its traceback instead of printing its "
                             f"message (also {DEBUG_ENV}=1)")
    sub = parser.add_subparsers(dest="stage", required=True, metavar="STAGE")
    for stage in stages:
        module = stage_module(stage)
        p = sub.add_parser(command(stage), help=module.HELP, description=module.__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
        _common(p, params=stage not in TOOLS)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # Only the named stage's module is imported: what runs is that module's import closure, which is
    # exactly the code its rule depends on (deps.py). `clip4idc --help` imports them all.
    named = next((a.replace("-", "_") for a in argv if not a.startswith("-")), None)   # past `--debug`
    args = build_parser((named,) if named in COMMANDS else COMMANDS).parse_args(argv)
    debug = args.debug or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    tool = args.stage.replace("-", "_") in TOOLS
    params = None
    if not tool:  # a tool has no params: no params.yaml needed where it runs
        try:
            params = params_mod.load(args.params, args.profile, getattr(args, "dataset", None))
        except params_mod.ParamsError as err:
            if debug:
                raise
            print(f"error: {err}", file=sys.stderr)
            return 2
    # Bars on a terminal only: in a Snakemake log a bar is thousands of redraws. Per-epoch
    # summaries are printed either way.
    args.progress = not args.no_progress and sys.stderr.isatty()
    args.argv = argv
    try:
        module = stage_module(args.stage)
        return (module.run(args) if tool else module.run(args, params)) or 0
    except INPUT_ERRORS as err:
        if debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
