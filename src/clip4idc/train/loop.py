"""The training loop adapt and finetune share: global batches, DDP under torchrun, bf16 autocast, resume.

Three properties the stages rely on:

1. **The same steps at any process count.** Each epoch's order is one permutation seeded by
   (seed, epoch), cut into *global* batches; under torchrun every process takes its contiguous
   slice of each global batch. Adaptation all-gathers features before its loss (`gather`), so
   2 processes × 64 compute the loss and gradients of 1 process × 128 (tested).
2. **A killed run resumes to the same end.** A resume checkpoint (model, optimiser, loop
   counters, best state, every process's RNG state) is written atomically at each epoch end and
   every `checkpoint_every` steps. Data order and per-item randomness are functions of
   (seed, epoch, index), so restarting mid-epoch skips the batches already done and continues
   exactly where the killed run was (tested on CPU: same weights, same metrics).
3. **Evaluation on one process.** After each epoch the first process evaluates and the others
   receive its scores, so early stopping decides the same everywhere.
4. **A diverged run stops.** A non-finite loss or gradient norm raises TrainingDivergedError before
   that step's update (common.check_finite), on every process at the same step: the weights and the
   last resume checkpoint stay as they were, and no checkpoint or log is written as if finished.
"""
from __future__ import annotations

import contextlib
import copy
import datetime
import json
import math
import os
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

from ..data.dataset import collate
from ..errors import CheckpointError
from ..io import remove_stale_temps
from ..params import ParamsError
from ..runtime import load_checkpoint, save_checkpoint
from .common import check_finite, clip_gradients
from .live import write_training_log


# ----------------------------------------------------------------------------- processes

@dataclass(frozen=True)
class Processes:
    """This process's place among the training processes (one, or torchrun's)."""
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def device(self) -> torch.device:
        return torch.device("cuda", self.local_rank) if torch.cuda.is_available() else torch.device("cpu")


@contextlib.contextmanager
def processes() -> Iterator[Processes]:
    """Join the process group torchrun describes in the environment (WORLD_SIZE > 1), else run alone.

    NCCL on GPUs, gloo on CPU. The group is left when the stage ends, also on error.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        yield Processes()
        return
    local_rank = int(os.environ["LOCAL_RANK"])
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(local_rank)
    # Generous timeout: the other processes wait while the first one evaluates an epoch.
    dist.init_process_group("nccl" if cuda else "gloo", timeout=datetime.timedelta(hours=2))
    try:
        yield Processes(dist.get_rank(), dist.get_world_size(), local_rank)
    finally:
        dist.destroy_process_group()


class _GatherWithGrad(torch.autograd.Function):
    """All-gather whose backward hands each process the *sum* over processes of the gradient of
    its rows (every process computes the same loss from the gathered rows)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.rows, ctx.rank = x.shape[0], dist.get_rank()
        out = x.new_empty((x.shape[0] * dist.get_world_size(), *x.shape[1:]))
        dist.all_gather_single(out, x.contiguous())
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.rows:(ctx.rank + 1) * ctx.rows]


def gather(x: torch.Tensor, procs: Processes) -> torch.Tensor:
    """Every process's rows of `x`, concatenated in rank order, with gradients.

    In backward each process receives the summed gradient of its rows; DDP then averages the
    parameter gradients over processes, which gives exactly the single-process gradient on the
    global batch (tested). The authors' AllGather returns only the local gradient, 1/world of it
    (DEVIATIONS.md).
    """
    if procs.world == 1:
        return x
    return _GatherWithGrad.apply(x)


def sum_over_processes(t: torch.Tensor, procs: Processes) -> torch.Tensor:
    """`t` summed over processes (no gradient: for counts)."""
    if procs.world == 1:
        return t
    t = t.detach().clone()
    dist.all_reduce(t)
    return t


def mean_over_processes(value: float, procs: Processes) -> float:
    if procs.world == 1:
        return value
    total = sum_over_processes(torch.tensor([value], dtype=torch.float64, device=procs.device), procs)
    return total.item() / procs.world


def from_main(obj: Any, procs: Processes) -> Any:
    """The first process's `obj`, on every process."""
    if procs.world == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def uses_bf16(amp: bool, dev: torch.device) -> bool:
    """bf16 autocast on a GPU when `amp`; fp32 on CPU always (CPU bf16 is slow, and not the paper's)."""
    return amp and dev.type == "cuda"


def autocast(amp: bool, dev: torch.device):
    return torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=uses_bf16(amp, dev))


# ----------------------------------------------------------------------------- data order

class GlobalBatches(Sampler[list[int]]):
    """Per epoch: a permutation seeded by (seed, epoch), cut into global batches of `batch_size`
    (the last partial batch dropped); yields this process's contiguous slice of each."""

    def __init__(self, n_items: int, batch_size: int, seed: int, procs: Processes, stage: str = "training"):
        if batch_size % procs.world:
            raise ParamsError(f"{stage}: the global batch of {batch_size} ({stage}.batch_size) does not split "
                             f"evenly over {procs.world} processes (execution.resources.{stage}.gpus)")
        if n_items < batch_size:
            raise ParamsError(f"{stage}: {n_items} training items is fewer than one batch of {batch_size} "
                             f"({stage}.batch_size)")
        self.n_items, self.batch_size, self.seed, self.procs = n_items, batch_size, seed, procs
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Order of `epoch`, beginning at its step `start` (the steps before are done)."""
        self.epoch, self.start = epoch, start

    def __len__(self) -> int:
        return self.steps_per_epoch - self.start

    def __iter__(self) -> Iterator[list[int]]:
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n_items)
        local = self.batch_size // self.procs.world
        for step in range(self.start, self.steps_per_epoch):
            batch = order[step * self.batch_size:(step + 1) * self.batch_size]
            yield batch[self.procs.rank * local:(self.procs.rank + 1) * local].tolist()

    @property
    def steps_per_epoch(self) -> int:
        return self.n_items // self.batch_size


# ----------------------------------------------------------------------------- resume

@dataclass
class LoopState:
    """Where a run stands; with the weights, optimiser and RNG states it is all a resume needs."""
    epoch: int = 0                              # epochs completed
    step: int = 0                               # steps completed in the epoch under way
    losses: list[float] = field(default_factory=list)   # of the epoch under way
    history: list[dict] = field(default_factory=list)   # one record per completed epoch
    best: float = -math.inf
    best_epoch: int = 0
    stale: int = 0                              # epochs since the best
    stopped: bool = False                       # early stop reached


def _rng_state() -> dict:
    np_state = np.random.get_state(legacy=False)
    return {
        "python": random.getstate(),
        "numpy": {"key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
                  "pos": int(np_state["state"]["pos"]), "has_gauss": int(np_state["has_gauss"]),
                  "gauss": float(np_state["gauss"])},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state({"bit_generator": "MT19937", "has_gauss": n["has_gauss"], "gauss": n["gauss"],
                         "state": {"key": n["key"].numpy().astype(np.uint32), "pos": n["pos"]}})
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tuples_to_lists(obj: Any) -> Any:
    return json.loads(json.dumps(obj))


def fingerprint(**what: Any) -> dict:
    """What a resume checkpoint must match: the stage's config and its inputs as they are on disk.

    Inputs are identified by path, size and modification time of every file (cheap even for an
    18 GB image cache): a changed input, or the same path rewritten, starts the run afresh.
    """
    def stat(path: Path) -> list:
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        return [[str(p.relative_to(path) if path.is_dir() else p.name), p.stat().st_size, p.stat().st_mtime_ns]
                for p in files if p.exists()]
    inputs = {str(p): stat(Path(p)) for p in what.pop("inputs", []) if p is not None}
    return _tuples_to_lists({**what, "inputs": inputs})


# What `fit` reads from a resume checkpoint: one without them (cut short, or not ours) cannot resume a run.
_RESUME_KEYS = frozenset({"kind", "fingerprint", "loop", "model", "optimizer", "best_state", "rng"})


def _not_resumable(ckpt: Any) -> str | None:
    """Why a checkpoint's content cannot resume a run, or None."""
    if not isinstance(ckpt, dict):
        return f"holds a {type(ckpt).__name__}, not a resume checkpoint"
    if missing := sorted(_RESUME_KEYS - set(ckpt)):
        return f"is not a whole resume checkpoint (no {', '.join(missing)})"
    if ckpt["kind"] != "resume":
        return f"is not a resume checkpoint (kind={ckpt['kind']!r})"
    return None


class Resume:
    """The resume checkpoint beside a stage's output: `<output>.resume`, removed when the stage ends.

    One that cannot be read (a kill or a full disk while it was copied, a damaged file) is moved aside to
    `<output>.resume.corrupt`, replacing an older one, and the run starts afresh: refusing it would fail every
    rerun, and a cluster's resubmissions with them, until someone deletes it by hand."""

    def __init__(self, output: str | Path, fingerprint: dict, procs: Processes):
        self.output = Path(output)
        self.path = Path(f"{output}.resume")
        self.aside = Path(f"{output}.resume.corrupt")
        self.fingerprint, self.procs = fingerprint, procs

    def load(self) -> dict | None:
        if self.procs.main:
            # What a killed save of either left (up to the model's size, or the optimiser's besides): its
            # writer is gone, so is its use. Here, not only at the next save: that may be an epoch away.
            for path in (self.path, self.output):
                remove_stale_temps(path)
        if not self.path.is_file():
            return None
        try:
            ckpt = load_checkpoint(self.path)
            unusable = _not_resumable(ckpt)
        except CheckpointError as err:  # "<path> cannot be read as a checkpoint (why); <how to rebuild>"
            unusable = str(err).removeprefix(f"{self.path} ").rsplit("; ", 1)[0]
        except FileNotFoundError:  # the first process moved it aside meanwhile
            return None
        if unusable is not None:
            # Every process finds the same bytes unusable; the first one moves them, the others start afresh too.
            if self.procs.main:
                os.replace(self.path, self.aside)
                print(f"{self.path} {unusable}: moved to {self.aside}, starting afresh", flush=True)
            return None
        if ckpt["fingerprint"] != self.fingerprint:
            if self.procs.main:
                print(f"{self.path} belongs to a run with other params, inputs or process count: "
                      f"starting afresh", flush=True)
            return None
        return ckpt

    def save(self, model: nn.Module, optimizer: torch.optim.Optimizer, state: LoopState,
             best_state: dict | None) -> None:
        rng = [_rng_state()]
        if self.procs.world > 1:  # every process has its own dropout stream
            rng = [None] * self.procs.world
            dist.all_gather_object(rng, _rng_state())
        if self.procs.main:
            save_checkpoint(self.path, {
                "kind": "resume", "fingerprint": self.fingerprint, "loop": asdict(state),
                "model": model.state_dict(), "optimizer": optimizer.state_dict(), "best_state": best_state,
                "rng": rng})
        if self.procs.world > 1:
            dist.barrier()

    def clear(self) -> None:
        if self.procs.main:
            self.path.unlink(missing_ok=True)


# ----------------------------------------------------------------------------- selection

def select(state: LoopState, score: float, patience: int | None) -> bool:
    """Record the score of the epoch `state.epoch` (0-based, just finished) → whether it is the new best.

    The authors' rules, in both stages: a tie goes to the *later* epoch (their `best <= score`),
    and training stops once *more* than `patience` epochs in a row brought no gain (their
    `early_stop > 10`: with patience 10 the 11th epoch without a gain is the last). `patience`
    None: never stop early (their adaptation script has no early stop).
    """
    if score >= state.best:
        state.best, state.best_epoch, state.stale = score, state.epoch + 1, 0
        return True
    state.stale += 1
    state.stopped = patience is not None and state.stale > patience
    return False


# ----------------------------------------------------------------------------- the loop

@dataclass
class Evaluation:
    """What an epoch's evaluation gives the loop: the selection score, a history record, a log line."""
    score: float
    record: dict
    line: str


def fit(*, model: nn.Module, optimizer: torch.optim.Optimizer, dataset: Dataset, batches: GlobalBatches,
        loss: Callable[[nn.Module, dict], torch.Tensor], evaluate: Callable[[nn.Module], Evaluation],
        epochs: int, patience: int | None, max_grad_norm: float, amp: bool, resume: Resume,
        checkpoint_every: int, procs: Processes, desc: str, progress: bool,
        after_step: Callable[[], None] | None = None, live: str | Path | None = None, run: str | None = None,
        hint: str = "Lower the learning rate.") -> tuple[dict, LoopState]:
    """Train for `epochs` (or until more than `patience` epochs bring no gain, see `select`); → (best
    state dict, state).

    `loss(model, batch)` runs the forward pass (the DDP-wrapped model under torchrun) and returns
    the loss; `evaluate(model)` scores the unwrapped model after each epoch (first process only).
    `live`: a folder for the per-epoch training log (dvclive's layout, see live.py).
    A non-finite loss or gradient norm raises TrainingDivergedError before that step's update (`check_finite`),
    naming `run` (default `desc`: say the dataset, variant, seed) and ending with `hint`; the weights are those
    before the step, and the resume checkpoint of the last epoch end (or `checkpoint_every`) stays as it was.
    """
    dev = procs.device
    state, best_state = LoopState(), None
    ckpt = resume.load()
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        state, best_state = LoopState(**ckpt["loop"]), ckpt["best_state"] if procs.main else None
        _set_rng_state(ckpt["rng"][procs.rank])
        if procs.main:
            print(f"{desc}: resuming from {resume.path} at epoch {state.epoch + 1}, step {state.step} "
                  f"of {batches.steps_per_epoch}", flush=True)
    if live is not None and procs.main:
        write_training_log(live, state.history)  # empty, or the resumed epochs: never a stale run's
    trained = model
    if procs.world > 1:
        trained = nn.parallel.DistributedDataParallel(
            model, device_ids=[procs.local_rank] if dev.type == "cuda" else None)

    while state.epoch < epochs and not state.stopped:
        model.train()
        batches.set_epoch(state.epoch, start=state.step)
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(state.epoch)
        # A generator of its own: creating the iterator draws a seed from it, which must not shift
        # the global stream (dropout) when a resumed run creates it at another step.
        loader = DataLoader(dataset, batch_sampler=batches, collate_fn=collate, generator=torch.Generator())
        bar = tqdm(loader, desc=f"{desc} epoch {state.epoch + 1}/{epochs}", initial=state.step,
                   total=batches.steps_per_epoch, disable=not (progress and procs.main), leave=False)
        for batch in bar:
            with autocast(amp, dev):
                value = loss(trained, batch)
            optimizer.zero_grad(set_to_none=True)
            value.backward()
            grad_norm = clip_gradients(model, max_grad_norm)
            # Both the same on every process (all-reduced), so all stop at the same step and none waits on the others.
            step_loss = mean_over_processes(value.item(), procs)
            check_finite(step_loss, grad_norm.item(), run=run or desc, epoch=state.epoch + 1, step=state.step + 1,
                         steps=batches.steps_per_epoch, hint=hint, kept=resume.path)
            optimizer.step()
            if after_step is not None:
                after_step()
            state.losses.append(step_loss)
            state.step += 1
            bar.set_postfix(loss=f"{state.losses[-1]:.3f}")
            if checkpoint_every and state.step % checkpoint_every == 0 and state.step < batches.steps_per_epoch:
                resume.save(model, optimizer, state, best_state)

        result = evaluate(model) if procs.main else None
        result = from_main(result, procs)
        state.history.append({"epoch": state.epoch + 1, "loss": float(np.mean(state.losses)), **result.record})
        if procs.main:
            print(f"{desc} epoch {state.epoch + 1}: loss {state.history[-1]['loss']:.4f}, {result.line}", flush=True)
            if live is not None:
                write_training_log(live, state.history)
        if select(state, result.score, patience) and procs.main:
            # Kept by the first process only, which writes every checkpoint. deepcopy keeps tensors
            # that share storage shared (a tower reachable under two names, the tied LM head), so
            # checkpoints hold them once.
            best_state = copy.deepcopy(model.state_dict())
        state.epoch, state.step, state.losses = state.epoch + 1, 0, []
        resume.save(model, optimizer, state, best_state)
    return best_state, state
