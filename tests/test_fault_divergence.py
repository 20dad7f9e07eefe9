"""A diverged training run fails, once, loudly: a non-finite loss or gradient norm stops the training loop
(train/loop.py `fit`, shared by adapt and finetune; pretrain's own loop) before that step's update.

Before, a learning rate too large gave `loss nan` and exit 0: a checkpoint of NaNs, which decode and evaluate
took like any other. Now the stage exits 1 with one line naming the run, the epoch, the step and the value,
writes no checkpoint and no log, and leaves the weights and the last resume checkpoint as they were.
The stage runs use the smoke profile's data with a learning rate of 1e30, which makes the first update with a
nonzero scheduled rate overflow the weights, so the step after it is NaN.
"""
from __future__ import annotations

import copy
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn
from torch.utils.data import Dataset

from clip4idc import cli
from clip4idc.errors import TrainingDivergedError
from clip4idc.train.loop import Evaluation, GlobalBatches, Processes, Resume, fingerprint, fit

REPO = Path(__file__).resolve().parents[1]
CLIP4IDC = [sys.executable, "-m", "clip4idc.cli"]
DATASET = "clevr_synth"
HUGE_LR = 1.0e30
# The one line a diverged run ends with: the run, where it stopped, both values, then the hint.
DIVERGED = re.compile(r"error: (?P<run>\w+ \([^)]*\)): training diverged at epoch (?P<epoch>\d+), "
                      r"step (?P<step>\d+) of (?P<steps>\d+) \(loss (?P<loss>\S+), gradient norm (?P<norm>\S+)\); "
                      r"stopped before that update, no checkpoint or log written.*\. "
                      r"Lower the learning rate \((?P<key>[\w.]+), now 1e\+30\)\.")


def _smoke_params(path: Path, **sections: dict) -> Path:
    """params.yaml with the smoke profile's `sections` merged over (one level below each section)."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    smoke = raw["profiles"]["smoke"]
    for name, values in sections.items():
        smoke[name] = {**smoke.get(name, {}), **values}
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> Path:
    """Smoke data and CLIP weights, made with the smoke profile as it is."""
    d = tmp_path_factory.mktemp("divergence")
    params = _smoke_params(d / "params.yaml")
    for stage, args in (("fetch", ["--dataset", DATASET, "--out", d / "raw", "--downloads", d / "dl"]),
                        ("prepare", ["--dataset", DATASET, "--raw", d / "raw", "--out", d / "prep"]),
                        ("pretrain", ["--data", d / "prep", "--out", d / "clip.pt", "--log", d / "pretrain.json"])):
        assert cli.main([stage, *map(str, args), "--params", str(params), "--profile", "smoke", "--no-progress"]) == 0
    return d


def _diverged_line(stderr: str) -> re.Match:
    """The single `error:` line a diverged run ends with; it is the last line of stderr and no traceback precedes it."""
    lines = stderr.strip().splitlines()
    assert lines and "Traceback" not in stderr, stderr
    assert sum(line.startswith("error:") for line in lines) == 1, stderr
    match = DIVERGED.fullmatch(lines[-1])
    assert match, stderr
    # The value that stopped it is named: a NaN or an infinity.
    assert {match["loss"], match["norm"]} & {"nan", "inf", "-inf"}, lines[-1]
    return match


def _outputs(d: Path, prefix: str) -> list[str]:
    return sorted(p.name for p in d.iterdir() if p.name.startswith(prefix))


@pytest.mark.slow
@pytest.mark.needs_java  # fine-tuning starts its caption scorer (Java) before training
def test_finetune_that_diverges_exits_1_with_one_line_and_writes_nothing(smoke):
    params = _smoke_params(smoke / "params-ft-nan.yaml", finetune={"optim": {"lr": HUGE_LR}})
    cmd = [*CLIP4IDC, "finetune", "--dataset", DATASET, "--data", smoke / "prep", "--variant", "no-adapt",
           "--seed", "3", "--clip", smoke / "clip.pt", "--out", smoke / "ft-nan.pt", "--log", smoke / "ft-nan.json",
           "--params", params, "--profile", "smoke", "--threads", "2", "--no-progress"]
    result = subprocess.run(list(map(str, cmd)), capture_output=True, text=True, cwd=REPO, timeout=600)

    assert result.returncode == 1, result.stdout + result.stderr
    match = _diverged_line(result.stderr)
    assert match["run"] == f"finetune (dataset {DATASET}, variant no-adapt, seed 3)"
    assert match["key"] == "finetune.optim.lr"
    assert int(match["epoch"]) == 1 and 1 <= int(match["step"]) <= int(match["steps"])
    # No epoch finished: no finished-looking checkpoint, log or temporary file, and no resume checkpoint either.
    assert _outputs(smoke, "ft-nan.") == [], _outputs(smoke, "ft-nan.")


@pytest.mark.slow
def test_adapt_that_diverges_exits_1_with_one_line_and_writes_nothing(smoke, capsys):
    params = _smoke_params(smoke / "params-adapt-nan.yaml", adapt={"optim": {"lr": HUGE_LR}})
    args = ["adapt", "--dataset", DATASET, "--data", smoke / "prep", "--clip", smoke / "clip.pt",
            "--out", smoke / "adapt-nan.pt", "--metrics", smoke / "adapt-nan.metrics.json",
            "--log", smoke / "adapt-nan.json", "--params", params, "--profile", "smoke", "--threads", "2",
            "--no-progress"]
    assert cli.main(list(map(str, args))) == 1
    match = _diverged_line(capsys.readouterr().err)
    assert match["run"] == f"adapt (dataset {DATASET}, seed 42)"  # the smoke profile keeps adapt.seed 42
    assert match["key"] == "adapt.optim.lr" and match["epoch"] == "1"
    assert _outputs(smoke, "adapt-nan.") == [], _outputs(smoke, "adapt-nan.")


@pytest.mark.slow
def test_pretrain_that_diverges_exits_1_with_one_line_and_writes_no_weights(smoke, capsys):
    params = _smoke_params(smoke / "params-pretrain-nan.yaml", pretrain={"lr": HUGE_LR})
    args = ["pretrain", "--data", smoke / "prep", "--out", smoke / "clip-nan.pt", "--log", smoke / "clip-nan.json",
            "--params", params, "--profile", "smoke", "--threads", "2", "--no-progress"]
    assert cli.main(list(map(str, args))) == 1
    match = _diverged_line(capsys.readouterr().err)
    assert match["run"] == f"pretrain (data {smoke / 'prep'}, seed 0)"
    assert match["key"] == "pretrain.lr" and match["epoch"] == "1"
    assert _outputs(smoke, "clip-nan.") == [], _outputs(smoke, "clip-nan.")


# ----------------------------------------------------------------------------- fit, step by step

class _Points(Dataset):
    def __init__(self, n: int):
        self.x = torch.randn(n, 3, generator=torch.Generator().manual_seed(0))

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        return {"x": self.x[i]}


STEPS = 4          # per epoch: 8 points, batches of 2
BAD = (2, 3)       # the (epoch, step) whose loss or gradient is not finite, counted from 1


def _fit(tmp_path: Path, model: nn.Module, loss, epochs: int = 3, max_grad_norm: float = 1.0):
    resume = Resume(tmp_path / "model.pt", fingerprint(stage="test"), Processes())
    return fit(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), dataset=_Points(2 * STEPS),
               batches=GlobalBatches(2 * STEPS, 2, seed=0, procs=Processes()), loss=loss,
               evaluate=lambda m: Evaluation(score=0.0, record={}, line="-"), epochs=epochs, patience=None,
               max_grad_norm=max_grad_norm, amp=False, resume=resume, checkpoint_every=0, procs=Processes(),
               desc="test (dataset toy, seed 0)", progress=False)


@pytest.mark.parametrize("bad", ["loss", "gradient"])
def test_fit_stops_before_the_update_of_a_non_finite_step_and_keeps_the_resume_checkpoint(tmp_path, bad, capsys):
    """`loss`: the loss is NaN but its gradient finite (NaN added to it), so only the loss check can catch it;
    `gradient`: the loss is finite and the gradient infinite."""
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    calls, seen = [0], {}

    def loss(m: nn.Module, batch: dict) -> torch.Tensor:
        epoch, step = calls[0] // STEPS + 1, calls[0] % STEPS + 1
        calls[0] += 1
        seen[epoch, step] = copy.deepcopy(m.state_dict())  # the weights this step starts from
        out = m(batch["x"]).pow(2).mean()
        if (epoch, step) == BAD:
            if bad == "loss":
                return out + math.nan
            out.register_hook(lambda g: torch.full_like(g, math.inf))
        return out

    with pytest.raises(TrainingDivergedError) as err:
        _fit(tmp_path, model, loss)
    message = str(err.value)
    assert message.startswith(f"test (dataset toy, seed 0): training diverged at epoch {BAD[0]}, step {BAD[1]} "
                              f"of {STEPS} ("), message
    values = re.search(r"\(loss (\S+), gradient norm (\S+)\)", message)
    assert values, message
    loss_value, norm = float(values[1]), float(values[2])
    # Both values named as they were: only the one that is not finite stopped the run.
    assert (math.isnan(loss_value) and math.isfinite(norm) if bad == "loss"
            else math.isfinite(loss_value) and not math.isfinite(norm)), message
    assert f"{tmp_path / 'model.pt.resume'} (the last resume checkpoint) is kept" in message, message
    assert message.endswith("Lower the learning rate.") and "\n" not in message, message  # fit's default hint
    # Stopped at once, and before the update: the weights are those the bad step started from, all finite.
    assert calls[0] == (BAD[0] - 1) * STEPS + BAD[1]
    for name, value in model.state_dict().items():
        assert torch.equal(value, seen[BAD][name]) and torch.isfinite(value).all(), name

    # The resume checkpoint of epoch 1's end is untouched and usable: a run with a finite loss resumes from it
    # with the weights epoch 2 started from, and finishes.
    ckpt = Resume(tmp_path / "model.pt", fingerprint(stage="test"), Processes()).load()
    assert ckpt is not None and ckpt["loop"]["epoch"] == BAD[0] - 1 and ckpt["loop"]["step"] == 0
    for name, value in ckpt["model"].items():
        assert torch.equal(value, seen[BAD[0], 1][name]), name
    capsys.readouterr()
    resumed = nn.Linear(3, 1)
    _, state = _fit(tmp_path, resumed, lambda m, batch: m(batch["x"]).pow(2).mean())
    assert f"resuming from {tmp_path / 'model.pt.resume'} at epoch {BAD[0]}, step 0" in capsys.readouterr().out
    assert state.epoch == 3 and [r["epoch"] for r in state.history] == [1, 2, 3]
    assert all(math.isfinite(r["loss"]) for r in state.history)


def test_max_grad_norm_0_means_no_clipping_not_no_learning(tmp_path):
    """params allow `optim.max_grad_norm: 0`, which BertAdam reads as "no per-tensor clipping"; fit's global
    clipping read it as "scale every gradient to norm 0", so nothing learned. 0 must train exactly as a bound
    that never binds."""
    def trained(max_grad_norm: float, folder: str) -> dict:
        torch.manual_seed(0)
        model = nn.Linear(3, 1)
        (tmp_path / folder).mkdir()
        _fit(tmp_path / folder, model, lambda m, batch: (m(batch["x"]) - 5).pow(2).mean(), epochs=1,
             max_grad_norm=max_grad_norm)
        return model.state_dict()

    torch.manual_seed(0)
    untrained = nn.Linear(3, 1).state_dict()
    unbounded, none = trained(1e9, "unbounded"), trained(0.0, "none")
    assert not torch.equal(none["bias"], untrained["bias"])          # it learned
    for name in unbounded:
        assert torch.equal(none[name], unbounded[name]), name
