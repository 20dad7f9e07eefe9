"""Training step speed and achieved FLOP/s, adapt and finetune stages, tiny and ViT-B/32 paper configs.

Usage: python bench/train_speed.py [--config tiny|paper|both] [--stage adapt|finetune|both] [--batch N]
       [--steps N] [--warmup 2] [--threads N] [--params params.yaml] [--json PATH]

Configs come from params.yaml: `tiny` is the embedded default (clip4idc-tiny, 64 px), `paper` the
`paper` profile (ViT-B-32-quickgelu, 224 px, intra 9, captioner 8 heads / FFN 2048 / 3+3 layers,
32 tokens). Random weights (speed does not depend on them), random images, fixed CLEVR-Change-style
captions; no data loading (bench/cache_speed.py times that). One training step is what the
project's loop (train/loop.py `fit`) does per batch:
- adapt: `adapt_loss` (tokenise, `AdaptModel` forward, `symmetric_infonce`), zero_grad, backward,
  global `clip_grad_norm_`, BertAdam step (config's `adapt.optim`, `adapt.freeze` applied), logit
  scale clamp;
- finetune: `finetune_loss` (tokenise, `CaptionModel` 'no-adapt' teacher forcing, logits at real
  positions only, `token_loss` with change/no-change roles), zero_grad, backward, clip, BertAdam step
  (config's `finetune.optim` and lr groups).
`--batch` counts image pairs per step (finetune: half change, half no-change pairs, i.e. batch/2
scenes). After `--warmup` steps, `--steps` steps are timed (best and median reported; pairs/s and
GFLOP/s use the best). FLOPs per step are counted once, on a separate step, with
`torch.utils.flop_counter.FlopCounterMode` over forward + backward (2 FLOPs per multiply-add; matmuls,
convolutions and attention only; causal attention counted as full; the optimiser's element-wise work
is not counted). The CPU's matmul peak is the best fp32 `torch.mm` rate over a few square sizes.
It first samples other processes' CPU use for 1 s and warns when the CPU is not idle: with as many
threads as cores, a busy CPU makes these figures many times worse. Figures: bench/README.md.
"""
from __future__ import annotations

import argparse
import gc
import json
import logging
import platform
import statistics
import time
from pathlib import Path

import torch
from machine import busy_cores, warn_if_busy  # bench/machine.py (the script's folder is on sys.path)
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from clip4idc.params import load
from clip4idc.text import CaptionTokenizer
from clip4idc.train.adapt import adapt_loss, adapt_model, adapt_optimizer, clamp_logit_scale
from clip4idc.runtime import set_threads
from clip4idc.models import CaptionModel
from clip4idc.train.finetune import (PrecomputedPairTokens, finetune_loss, finetune_model, finetune_optimizer,
                                    pair_encoder_frozen, restrict_vocabulary)
from clip4idc.train.loop import Processes, autocast

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BATCH = {"tiny": 64, "paper": 8}
DEFAULT_STEPS = {"tiny": 20, "paper": 5}
T_TOTAL = 10_000  # optimiser schedule length: only sets the lr value, not the cost of a step

# CLEVR-Change-style captions (change captions for role 0, no-change captions for role 1).
CHANGE_CAPTIONS = (
    "the large gray rubber cylinder that is behind the small blue metal sphere changed its location",
    "the small red metal cube has been newly placed",
    "the big cyan matte ball turned yellow",
    "someone removed the tiny brown shiny cylinder",
    "the purple rubber cube in front of the green sphere is now metal",
    "a new small yellow matte cylinder appeared to the left of the large gray cube",
)
NO_CHANGE_CAPTIONS = (
    "there is no change", "the scene remains the same", "nothing has changed",
    "the two scenes seem identical", "no change was made", "the scene did not change",
)

# PyTorch's counter knows the CUDA attention kernels; on a CPU, SDPA runs this fused kernel instead.
# (FlopCounterMode calls these with each tensor argument replaced by its shape.)
_CPU_SDPA = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu:
        lambda q, k, v, *args, out_shape=None, **kwargs: sdpa_flop_count(q, k, v),
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward:
        lambda grad_out, q, k, v, *args, out_shape=None, **kwargs: sdpa_backward_flop_count(grad_out, q, k, v),
}


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def matmul_peak(dev: torch.device, sizes=(1024, 2048, 4096), repeats: int = 4) -> dict[int, float]:
    """Best fp32 `torch.mm` GFLOP/s per square size (one warm-up, then best of `repeats`)."""
    rates = {}
    for n in sizes:
        a, b = torch.randn(n, n, device=dev), torch.randn(n, n, device=dev)
        c = torch.empty(n, n, device=dev)
        torch.mm(a, b, out=c)
        sync(dev)
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            torch.mm(a, b, out=c)
            sync(dev)
            best = min(best, time.perf_counter() - start)
        rates[n] = 2 * n ** 3 / best / 1e9
        del a, b, c
    return rates


def captions(batch: int, finetune: bool) -> tuple[list[str], torch.Tensor]:
    """Texts and roles laid out like a collated batch: finetune alternates change / no-change pairs
    (one scene = both), adapt uses change captions only."""
    roles = [i % 2 if finetune else 0 for i in range(batch)]
    counters = [0, 0]
    texts = []
    for r in roles:
        pool = NO_CHANGE_CAPTIONS if r else CHANGE_CAPTIONS
        texts.append(pool[counters[r] % len(pool)])
        counters[r] += 1
    return texts, torch.tensor(roles, dtype=torch.long)


class Stage:
    """One stage's model, optimiser and batch; `step()` is one training step of `fit`."""

    def __init__(self, config: str, name: str, params, batch: int, dev: torch.device, output_vocab: str = "clip"):
        self.config, self.name, self.batch, self.dev = config, name, batch, dev
        m = params.model
        procs = Processes()
        tokenizer = CaptionTokenizer(m.arch, m.max_tokens)
        texts, roles = captions(batch, finetune=name == "finetune")
        if name == "adapt":
            cfg = params.adapt
            self.model = adapt_model(m, cfg, None).to(dev)
            self.opt = adapt_optimizer(self.model, cfg, T_TOTAL)
            self.loss = lambda model, b: adapt_loss(model, b, tokenizer, procs)
            self.after_step = lambda: clamp_logit_scale(self.model, cfg)
            self.tokens = int((tokenizer.retrieval(texts) != 0).sum())
        else:
            cfg = params.finetune
            self.model = finetune_model("no-adapt", m, cfg, None)
            if output_vocab == "train":   # as the finetune stage does, on the captions it trains on
                restrict_vocabulary(self.model.captioner, tokenizer, CHANGE_CAPTIONS + NO_CHANGE_CAPTIONS)
            self.model = self.model.to(dev)
            self.opt = finetune_optimizer(self.model, cfg, T_TOTAL)
            self.loss = lambda model, b: finetune_loss(model, b, tokenizer, procs)
            self.after_step = None
            self.tokens = int(tokenizer.training(texts)["target_mask"].sum())
        self.amp, self.max_grad_norm = cfg.amp, cfg.optim.max_grad_norm
        visual = self.model.pair_encoder.visual
        size = visual.image_size if isinstance(visual.image_size, tuple) else (visual.image_size,) * 2
        self.image_size = size[0]
        g = torch.Generator().manual_seed(0)
        self.data = {"before": torch.randn(batch, 3, *size, generator=g),
                     "after": torch.randn(batch, 3, *size, generator=g), "text": texts, "role": roles}
        self.precomputed = name == "finetune" and pair_encoder_frozen(self.model)
        if self.precomputed:
            # As the finetune stage: a frozen pair encoder runs once per pair, before training; a step is the
            # captioner on those tokens (the one-off encoding is timed by decode_speed.py's "encode alone").
            with torch.no_grad():
                tokens = self.model.pair_encoder.eval()(self.data["before"].to(dev), self.data["after"].to(dev))
            half = tokens.shape[1] // 2
            self.data["before"], self.data["after"] = tokens[:, :half].cpu(), tokens[:, half:].cpu()
            self.model = CaptionModel(PrecomputedPairTokens(self.model.pair_encoder.embed_dim), self.model.captioner)
            self.opt = finetune_optimizer(self.model, cfg, T_TOTAL)
        self.arch, self.max_tokens = m.arch, m.max_tokens
        head = getattr(getattr(self.model, "captioner", None), "output_ids", None)
        self.output_words = None if head is None else int(head.numel())
        self.params_total = sum(p.numel() for p in self.model.parameters())
        self.params_trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        self.model.train()

    def step(self) -> dict[str, float]:
        """One step of `fit`; → seconds spent in forward (incl. tokenising and the loss), backward, optimiser."""
        t0 = time.perf_counter()
        with autocast(self.amp, self.dev):
            value = self.loss(self.model, self.data)
        sync(self.dev)
        t1 = time.perf_counter()
        self.opt.zero_grad(set_to_none=True)
        value.backward()
        sync(self.dev)
        t2 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.max_grad_norm)
        self.opt.step()
        if self.after_step is not None:
            self.after_step()
        sync(self.dev)
        t3 = time.perf_counter()
        if not torch.isfinite(value):
            raise RuntimeError(f"{self.config} {self.name}: loss is {value.item()}")
        return {"forward": t1 - t0, "backward": t2 - t1, "optimizer": t3 - t2, "total": t3 - t0}

    def count_flops(self) -> int:
        """FLOPs of one forward + backward (the optimiser's element-wise work is not counted)."""
        with FlopCounterMode(display=False, custom_mapping=_CPU_SDPA) as counter:
            with autocast(self.amp, self.dev):
                value = self.loss(self.model, self.data)
            self.opt.zero_grad(set_to_none=True)
            value.backward()
        self.opt.zero_grad(set_to_none=True)
        return counter.get_total_flops()


def bench(stage: Stage, warmup: int, steps: int, peak: float) -> dict:
    for _ in range(warmup):
        stage.step()
    flops = stage.count_flops()
    times = [stage.step() for _ in range(steps)]
    best = min(times, key=lambda t: t["total"])
    total = [t["total"] for t in times]
    fwd_bwd = min(t["forward"] + t["backward"] for t in times)
    return {
        "config": stage.config, "stage": stage.name, "arch": stage.arch, "image_size": stage.image_size,
        "max_tokens": stage.max_tokens, "output_words": stage.output_words, "precomputed_pair_tokens": getattr(stage, "precomputed", False), "batch_pairs": stage.batch, "real_tokens": stage.tokens,
        "params_total": stage.params_total, "params_trainable": stage.params_trainable,
        "warmup": warmup, "steps": steps,
        "ms_best": 1e3 * best["total"], "ms_median": 1e3 * statistics.median(total),
        "pairs_per_s": stage.batch / best["total"],
        "gflop_per_step": flops / 1e9,
        "gflops": flops / best["total"] / 1e9,
        "pct_peak": 100 * flops / best["total"] / 1e9 / peak,
        "gflops_fwd_bwd": flops / fwd_bwd / 1e9,   # FLOP/s while in forward + backward only
        "phases_ms_best_step": {k: 1e3 * v for k, v in best.items()},
        "phases_ms_median": {k: 1e3 * statistics.median(t[k] for t in times) for k in best},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", choices=("tiny", "paper", "both"), default="both")
    ap.add_argument("--stage", choices=("adapt", "finetune", "both"), default="both")
    ap.add_argument("--batch", type=int, default=None,
                    help=f"image pairs per step (default: {DEFAULT_BATCH})")
    ap.add_argument("--steps", type=int, default=None, help=f"timed steps (default: {DEFAULT_STEPS})")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    ap.add_argument("--json", default=None, help="write the figures to this JSON file")
    ap.add_argument("--output-vocab", choices=("clip", "train"), default="clip",
                    help="finetune: the captioner scores all of CLIP's words, or only the captions' "
                         "(model.output_vocab)")
    args = ap.parse_args()
    if args.batch is not None and args.batch < 2:
        ap.error("--batch must be at least 2 (InfoNCE needs negatives; finetune pairs come in scenes of 2)")

    logging.getLogger().setLevel(logging.ERROR)  # open_clip's "initialized randomly": intended here
    threads = set_threads(args.threads)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    busy = busy_cores()
    print(f"torch {torch.__version__}, {threads} threads, {dev.type} ({cpu}, "
          f"{torch.backends.cpu.get_cpu_capability()}); other processes' CPU use at start: "
          f"{'unknown' if busy is None else f'{busy:.2f} cores'}", flush=True)
    warn_if_busy(busy)

    rates = matmul_peak(dev)
    peak = max(rates.values())
    print("fp32 torch.mm: " + ", ".join(f"{n}²: {r:.1f} GFLOP/s" for n, r in rates.items())
          + f" → measured peak {peak:.1f} GFLOP/s", flush=True)

    configs = ("tiny", "paper") if args.config == "both" else (args.config,)
    stages = ("adapt", "finetune") if args.stage == "both" else (args.stage,)
    results = []
    for config in configs:
        params = load(args.params) if config == "tiny" else load(args.params, "paper")
        batch = args.batch or DEFAULT_BATCH[config]
        steps = args.steps or DEFAULT_STEPS[config]
        for name in stages:
            torch.manual_seed(0)
            start = time.perf_counter()
            stage = Stage(config, name, params, batch, dev, args.output_vocab)
            r = bench(stage, args.warmup, steps, peak)
            del stage
            gc.collect()
            results.append(r)
            ph = r["phases_ms_best_step"]
            print(f"{config:5s} {name:8s} {r['arch']} {r['image_size']}px batch {batch}: "
                  f"{r['ms_best']:.0f} ms/step best, {r['ms_median']:.0f} median ({steps} steps) · "
                  f"{r['pairs_per_s']:.1f} pairs/s · {r['gflop_per_step']:.1f} GFLOP/step · "
                  f"{r['gflops']:.1f} GFLOP/s ({r['pct_peak']:.0f} % of peak; fwd+bwd alone "
                  f"{r['gflops_fwd_bwd']:.1f}) · forward {ph['forward']:.0f} / backward {ph['backward']:.0f} / "
                  f"optimiser {ph['optimizer']:.0f} ms · {time.perf_counter() - start:.0f} s", flush=True)

    print()
    print(f"torch {torch.__version__}, {threads} threads, {cpu}; fp32 matmul peak measured "
          f"{peak:.0f} GFLOP/s (`torch.mm`, best of {', '.join(f'{n}²' for n in rates)})")
    print()
    print("| config | stage | batch (pairs) | ms/step (best) | ms/step (median) | pairs/s | GFLOP/step "
          "| GFLOP/s | % of peak | forward / backward / optimiser, ms |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        ph = r["phases_ms_best_step"]
        print(f"| {r['config']} ({r['arch']}, {r['image_size']} px) | {r['stage']} | {r['batch_pairs']} "
              f"| {r['ms_best']:,.0f} | {r['ms_median']:,.0f} | {r['pairs_per_s']:,.1f} | {r['gflop_per_step']:,.1f} "
              f"| {r['gflops']:,.1f} | {r['pct_peak']:.0f} % "
              f"| {ph['forward']:,.0f} / {ph['backward']:,.0f} / {ph['optimizer']:,.0f} |")

    if args.json:
        out = {"torch": torch.__version__, "threads": threads, "device": dev.type, "cpu": cpu,
               "other_busy_cores_at_start": busy, "matmul_gflops": {str(n): r for n, r in rates.items()},
               "peak_gflops": peak, "results": results}
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
