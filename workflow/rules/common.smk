# Shared names for the rules: paths, datasets, variants, seeds. No stage logic lives here.
from clip4idc import deps as clip4idc_deps

PROFILE = P.profile
DATASETS = list(P.datasets)
VARIANTS = list(clip4idc_params.VARIANTS)
SEEDS = list(P.seeds)
# The datasets whose authors' released weights are converted, decoded and scored (paper profile; none by default).
RELEASED = list(P.released)
# Each dataset's own view of the params (its `data.<dataset>.overrides` applied): its rules' resources.
DP = {d: clip4idc_params.resolve(config, PROFILE, "params.yaml", dataset=d) for d in DATASETS}
RAW = "data/raw/{dataset}"
DOWNLOADS = "data/downloads/{dataset}"
PREPARED = "data/prepared/{dataset}"
# The tiny CLIP is pretrained on the first dataset (model.pretrained: pipeline); other weights ignore it.
PRETRAIN_DATA = f"data/prepared/{DATASETS[0]}"
CLIP_WEIGHTS = "models/pretrain/clip.pt"
# Every command reads params.yaml under the profile chosen here, exactly as in dvc.yaml.
CLI = f"clip4idc {{stage}} --params params.yaml --profile {PROFILE}"
CONDA_ENV = "../envs/clip4idc.yaml"

# What each rule depends on besides its data, derived from the source (src/clip4idc/deps.py); dvc.yaml
# lists the same files and keys (tests/test_workflow.py):
# - code: the import closure of its stage module, src/clip4idc/stages/<rule>.py; editing any of those
#   files re-runs the rule;
# - params: the params.yaml keys its stage module declares (PARAMS), with `profile` and the active
#   profile's section, compared as written in params.yaml, exactly as DVC compares them.
ROOT = workflow.basedir


def code(stage):
    return clip4idc_deps.code_files(stage, ROOT)


def tracked(stage):
    return lambda wc: clip4idc_deps.tracked_params(config, stage, ROOT, **dict(wc.items()))


# clip-ft and no-adapt start from CLIP's weights; adapt from the adaptation checkpoint, which holds all
# of CLIP. (dvc.yaml needs two stages for this, finetune and finetune_adapt: a matrix has no condition.)
def finetune_start(wc):
    return f"models/{wc.dataset}/adapt/model.pt" if wc.variant == "adapt" else CLIP_WEIGHTS


# The rule `decode` captions with a variant and seed's checkpoint (`<variant>/seed<seed>`) or with the authors'
# converted captioner (`released`). (dvc.yaml needs two stages for this, decode and decode_released.)
def decoded_checkpoint(wc):
    if wc.run == "released":
        return f"models/{wc.dataset}/released/finetune.pt"
    variant, seed = wc.run.split("/")
    return f"models/{wc.dataset}/finetune/{variant}/{seed}.pt"


# The rule `evaluate` scores a variant and seed (`<variant>/seed<seed>`), the baseline (`constant`) or the
# authors' released captioner (`released`). (dvc.yaml needs three stages for this: evaluate,
# evaluate_baseline, evaluate_released.)
def scored_as(wc):
    if wc.run in ("constant", "released"):
        return f"--variant {wc.run}"
    variant, seed = wc.run.split("/")
    return f"--variant {variant} --seed {seed.removeprefix('seed')}"


def stage_threads(stage):
    """A rule's `threads:`, from `execution.resources.<stage>.threads` (0: every core Snakemake was given, so one
    such job at a time). Snakemake passes them to the job as OMP_NUM_THREADS, which the stages read. Resolved at
    job time: `snakemake --report` runs without --cores."""
    getattr(P.execution.resources, stage)

    def threads(wc):
        params = DP[wc.dataset] if "dataset" in wc.keys() else P
        return getattr(params.execution.resources, stage).threads or workflow.cores

    return threads


def stage_resources(stage):
    """A rule's `resources:`, read from `execution.resources.<stage>` of its dataset's params (`DP`; `P` for the
    rules without a dataset wildcard: pretrain, report). The names are those the SLURM executor plugin turns into
    sbatch/srun options: gpu -> --gpus, mem_mb -> --mem, runtime (minutes) -> -t. A stage with gpus 0 gets no
    `gpu` at all (None drops a resource), so its job asks for no GPU. A local run limits only resources named in
    `--resources`: without `--resources gpu=N`, `gpu` holds back no job."""
    getattr(P.execution.resources, stage)  # an unknown stage fails when the Snakefile is read, not per job

    def read(wc):
        params = DP[wc.dataset] if "dataset" in wc.keys() else P
        return getattr(params.execution.resources, stage)

    return dict(
        gpu=lambda wc: read(wc).gpus or None,
        mem_mb=lambda wc: read(wc).mem_mb,
        runtime=lambda wc: read(wc).runtime,
    )


wildcard_constraints:
    dataset="|".join(DATASETS),
    variant="|".join(VARIANTS),
    seed=r"\d+",
