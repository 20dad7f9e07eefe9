"""The shared training loop: global batches, the all-gathered loss under 2 gloo processes, resume.

The resume and multi-process tests run the real CLI (`clip4idc adapt|finetune`) on the smoke
profile's data; a killed run is killed with SIGKILL, as a cluster's out-of-time would.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import yaml

from clip4idc import cli
from clip4idc.models.build import create_clip
from clip4idc.models.idc import AdaptModel
from clip4idc.text import CaptionTokenizer
from clip4idc.train.adapt import adapt_loss
from clip4idc.train.loop import GlobalBatches, LoopState, Processes, Resume, fingerprint

REPO = Path(__file__).resolve().parents[1]
CLIP4IDC = [sys.executable, "-m", "clip4idc.cli"]
DATASET = "clevr_synth"


# ----------------------------------------------------------------------------- global batches

@pytest.mark.parametrize("world", [1, 2, 4])
def test_process_slices_make_up_the_global_batch(world):
    single = list(GlobalBatches(50, 8, seed=3, procs=Processes()))
    slices = [list(GlobalBatches(50, 8, seed=3, procs=Processes(rank=r, world=world))) for r in range(world)]
    assert len(single) == 6  # 50 // 8, the partial batch dropped
    for step, batch in enumerate(single):
        assert sum((s[step] for s in slices), []) == batch


def test_global_batches_per_epoch_order_and_start():
    b = GlobalBatches(40, 4, seed=0, procs=Processes())
    epoch0 = list(b)
    b.set_epoch(1)
    epoch1 = list(b)
    assert epoch0 != epoch1 and sorted(sum(epoch0, [])) == sorted(sum(epoch1, [])) == list(range(40))
    b.set_epoch(1, start=3)
    assert list(b) == epoch1[3:] and len(b) == 7 and b.steps_per_epoch == 10


def test_global_batches_validate():
    with pytest.raises(ValueError, match="does not split evenly over 3"):
        GlobalBatches(40, 8, seed=0, procs=Processes(rank=0, world=3))
    with pytest.raises(ValueError, match="fewer than one batch"):
        GlobalBatches(5, 8, seed=0, procs=Processes())


# ----------------------------------------------------------------------------- all-gathered loss

def _batch(n: int) -> dict:
    g = torch.Generator().manual_seed(1)
    words = ["the red cube moved", "a small ball changed color", "no change", "the cylinder is gone"]
    return {"before": torch.randn(n, 3, 64, 64, generator=g), "after": torch.randn(n, 3, 64, 64, generator=g),
            "text": [words[i % len(words)] + f" {i}" for i in range(n)]}


def _model() -> AdaptModel:
    torch.manual_seed(0)
    return AdaptModel(create_clip("clip4idc-tiny", None), intra_layers=3)


def _rank_worker(rank: int, world: int, rendezvous: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world)
    try:
        procs = Processes(rank=rank, world=world, local_rank=rank)
        model = _model()
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        batch, local = _batch(8), 8 // world
        mine = {k: v[rank * local:(rank + 1) * local] for k, v in batch.items()}
        loss = adapt_loss(ddp, mine, CaptionTokenizer("clip4idc-tiny", 24), procs)
        loss.backward()
        torch.save({"loss": loss.detach(), "grads": {n: p.grad for n, p in model.named_parameters()}},
                   f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def test_two_process_gathered_loss_and_gradients_equal_one_process(tmp_path):
    """2 gloo processes × 4 pairs give the loss and the gradients of 1 process × 8 pairs."""
    torch.set_num_threads(1)
    model = _model()
    loss = adapt_loss(model, _batch(8), CaptionTokenizer("clip4idc-tiny", 24), Processes())
    loss.backward()
    expected = {n: p.grad for n, p in model.named_parameters()}

    mp.spawn(_rank_worker, args=(2, str(tmp_path / "rdzv"), str(tmp_path / "out")), nprocs=2, join=True)
    for rank in range(2):
        got = torch.load(tmp_path / f"out.{rank}", weights_only=True)
        torch.testing.assert_close(got["loss"], loss.detach(), rtol=1e-6, atol=1e-6)
        assert set(got["grads"]) == set(expected)
        for name, grad in expected.items():
            assert grad is not None and torch.count_nonzero(grad) > 0, name
            torch.testing.assert_close(got["grads"][name], grad, rtol=1e-4, atol=1e-6, msg=name)


# ----------------------------------------------------------------------------- the CLI runs

@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> Path:
    """Smoke data and CLIP weights, and a params file whose smoke profile trains 2 epochs and
    writes a resume checkpoint every 2 steps."""
    d = tmp_path_factory.mktemp("loop")
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    smoke = raw["profiles"]["smoke"]
    smoke["adapt"]["epochs"] = smoke["finetune"]["epochs"] = 2
    smoke["execution"] = {"checkpoint_every": 2}
    (d / "params.yaml").write_text(yaml.safe_dump(raw))
    # Dropout draws differ between 1 process and 2 (each has its own stream): compare without it.
    smoke["model"] = {"captioner": {"dropout": 0.0}}
    (d / "params-1proc.yaml").write_text(yaml.safe_dump(raw))
    smoke["execution"]["resources"] = {"adapt": {"gpus": 2}, "finetune": {"gpus": 2}}
    (d / "params-2proc.yaml").write_text(yaml.safe_dump(raw))
    for stage, args in (("fetch", ["--dataset", DATASET, "--out", d / "raw", "--downloads", d / "dl"]),
                        ("prepare", ["--dataset", DATASET, "--raw", d / "raw", "--out", d / "prep"]),
                        ("pretrain", ["--data", d / "prep", "--out", d / "clip.pt", "--log", d / "pretrain.json"])):
        assert cli.main([stage, *map(str, args), "--params", str(d / "params.yaml"), "--profile", "smoke",
                         "--no-progress"]) == 0
    return d


def _command(d: Path, stage: str, out: str, params: str = "params.yaml") -> list[str]:
    if stage == "adapt":
        args = ["--clip", d / "clip.pt", "--metrics", d / f"{out}.metrics.json"]
    else:
        args = ["--variant", "no-adapt", "--seed", "3", "--clip", d / "clip.pt"]
    return [*CLIP4IDC, stage, "--dataset", DATASET, "--data", d / "prep", *args, "--out", d / f"{out}.pt",
            "--log", d / f"{out}.log.json", "--live", d / f"{out}.live", "--params", d / params, "--profile", "smoke",
            "--threads", "2", "--no-progress"]


def _run(cmd: list) -> str:
    result = subprocess.run(list(map(str, cmd)), capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def _run_killed_twice(cmd: list, resume: Path) -> list[str]:
    """Run `cmd`, SIGKILL it as soon as it writes a resume checkpoint; again with the next
    checkpoint; then let a third run finish. → the three runs' stdout."""
    outputs = []
    for attempt in range(3):
        seen = resume.stat().st_mtime_ns if resume.exists() else None
        proc = subprocess.Popen(list(map(str, cmd)), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, cwd=REPO)
        if attempt < 2:
            while proc.poll() is None:
                if resume.exists() and resume.stat().st_mtime_ns != seen:
                    proc.send_signal(signal.SIGKILL)
                    break
                time.sleep(0.002)
        out, _ = proc.communicate(timeout=300)
        expected_rc = -signal.SIGKILL if attempt < 2 else 0
        assert proc.returncode == expected_rc, f"run {attempt}: rc {proc.returncode}\n{out}"
        outputs.append(out)
    return outputs


def _tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def _same_state(a: Path, b: Path) -> None:
    x = torch.load(a, weights_only=True)
    y = torch.load(b, weights_only=True)
    assert x["epoch"] == y["epoch"]
    assert x["state_dict"].keys() == y["state_dict"].keys()
    for name in x["state_dict"]:
        assert torch.equal(x["state_dict"][name], y["state_dict"][name]), name


# The CLI runs are slow: each trains several times. Fine-tuning selects its epoch by CIDEr (Java).
STAGES = ["adapt", pytest.param("finetune", marks=pytest.mark.needs_java)]


@pytest.mark.slow
@pytest.mark.parametrize("stage", STAGES)
def test_killed_run_resumes_to_the_same_weights_and_metrics(smoke, stage):
    _run(_command(smoke, stage, f"{stage}-whole"))
    outputs = _run_killed_twice(_command(smoke, stage, f"{stage}-killed"), smoke / f"{stage}-killed.pt.resume")

    assert "resuming from" in outputs[1] and "resuming from" in outputs[2], outputs
    _same_state(smoke / f"{stage}-whole.pt", smoke / f"{stage}-killed.pt")
    # Histories (per-epoch loss and selection metrics) identical to the last digit.
    assert (smoke / f"{stage}-whole.log.json").read_text() == (smoke / f"{stage}-killed.log.json").read_text()
    if stage == "adapt":
        assert (smoke / "adapt-whole.metrics.json").read_text() == (smoke / "adapt-killed.metrics.json").read_text()
    # The dvclive log is rewritten from the restored history: no epoch twice, none from a killed run.
    whole, killed = (_tree(smoke / f"{stage}-{run}.live") for run in ("whole", "killed"))
    assert whole == killed and "plots/metrics/train/loss.tsv" in whole
    assert not (smoke / f"{stage}-killed.pt.resume").exists()  # removed once the stage is done


@pytest.mark.slow
def test_resume_checkpoint_of_other_params_is_ignored(smoke, tmp_path):
    procs = Processes()
    old = Resume(tmp_path / "model.pt", fingerprint(stage="adapt", epochs=5, inputs=[smoke / "clip.pt"]), procs)
    model = torch.nn.Linear(2, 2)
    old.save(model, torch.optim.SGD(model.parameters(), lr=0.1), LoopState(epoch=1), None)
    assert old.load() is not None
    other = Resume(tmp_path / "model.pt", fingerprint(stage="adapt", epochs=6, inputs=[smoke / "clip.pt"]), procs)
    assert other.load() is None
    touched = tmp_path / "clip.pt"
    touched.write_bytes((smoke / "clip.pt").read_bytes())
    moved = Resume(tmp_path / "model.pt", fingerprint(stage="adapt", epochs=5, inputs=[touched]), procs)
    assert moved.load() is None  # another input file


@pytest.mark.slow
@pytest.mark.parametrize("stage", STAGES)
def test_two_cpu_processes_train_like_one(smoke, stage):
    """`execution.resources.<stage>.gpus: 2` launches 2 processes (gloo on CPU) through torchrun's
    launcher; on the same global batches they end where one process ends (without dropout)."""
    _run(_command(smoke, stage, f"{stage}-one", params="params-1proc.yaml"))
    out = _run(_command(smoke, stage, f"{stage}-two", params="params-2proc.yaml"))
    assert "running 2 CPU processes" in out
    one = torch.load(smoke / f"{stage}-one.pt", weights_only=True)["state_dict"]
    two = torch.load(smoke / f"{stage}-two.pt", weights_only=True)["state_dict"]
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=1e-4, atol=1e-4, msg=name)


def test_bf16_autocast_only_on_a_gpu():
    from clip4idc.train.loop import autocast, uses_bf16
    assert uses_bf16(True, torch.device("cuda", 0)) and not uses_bf16(False, torch.device("cuda", 0))
    assert not uses_bf16(True, torch.device("cpu"))
    with autocast(True, torch.device("cpu")):
        assert not torch.is_autocast_enabled("cpu")
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


def test_threads_follow_snakemakes_omp_num_threads(monkeypatch):
    """Snakemake passes a job's `threads` as OMP_NUM_THREADS: one-thread jobs then run side by side."""
    from clip4idc.runtime import set_threads
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        assert set_threads(None) == 1 == torch.get_num_threads()
        monkeypatch.delenv("OMP_NUM_THREADS")
        assert set_threads(None) == (os.cpu_count() or 1)
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        assert set_threads(2) == min(2, os.cpu_count() or 1)   # an explicit --threads wins
    finally:
        torch.set_num_threads(before)


def test_a_stage_takes_its_params_threads_where_no_orchestrator_sets_them(monkeypatch):
    """DVC sets no OMP_NUM_THREADS: a stage then runs with `execution.resources.<stage>.threads`, the count
    Snakemake gives the same job, so both orchestrators write the same bits (the sums depend on the count)."""
    from clip4idc.runtime import stage_threads
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert stage_threads(None, 1) == 1          # DVC, a hand run: the params' count
    assert stage_threads(None, 0) is None       # 0: every core
    assert stage_threads(3, 1) == 3             # --threads wins
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert stage_threads(None, 1) == 2          # Snakemake's job threads (capped at its --cores) win over params
    assert stage_threads(None, 0) == 2
    assert stage_threads(1, 0) == 1
