"""One module per pipeline stage, named after its Snakemake rule and DVC stage.

Each module is the whole of its command line, `clip4idc <stage>`:
- `HELP`: one line for `clip4idc --help`; the module docstring is the stage's `--help` text;
- `PARAMS`: the keys of params.yaml the stage reads, as written there (`{dataset}` stands for the
  dataset it runs on). Both orchestrators track exactly these (deps.py), plus `profile` and the
  active profile's section, through which any key can be overridden;
- `add_arguments(parser)`: its inputs and outputs;
- `run(args, params)`: the work, on params resolved for its profile and dataset. Heavy imports live
  inside `run`, so that `clip4idc <stage> --help` is quick and a stage imports only what it uses.
What a stage's code is (and so what re-runs it) is its module's import closure (deps.py).

`TOOLS` are commands that are no stage: no rule, no DVC stage, no params.yaml (their modules live
here too and have `HELP`, the docstring and `add_arguments`, but no `PARAMS`, and `run(args)`).
"""
from __future__ import annotations

import argparse

# In DAG order; the names of the rules, the DVC stages and these modules.
STAGES = ("fetch", "prepare", "pretrain", "adapt", "released", "finetune", "decode", "baseline", "evaluate",
          "analyze", "report", "tables_pdf")
# For a user, outside the DAG: `caption` captions any image pair with any fine-tuned checkpoint.
TOOLS = ("caption",)


def command(stage: str) -> str:
    """The subcommand of a stage or tool (`tables_pdf` -> `tables-pdf`)."""
    return stage.replace("_", "-")


def add_dataset(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True, help="a dataset of the profile's `datasets` (its "
                   "`data.<dataset>.overrides` apply)")


def add_live(p: argparse.ArgumentParser) -> None:
    p.add_argument("--live", default=None, help="folder for the per-epoch training log in dvclive's layout "
                   "(rewritten after every epoch; `dvc plots` reads it)")
