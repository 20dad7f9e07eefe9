# Shared names for the rules: paths, datasets, variants, seeds. No stage logic lives here.

PROFILE = P.profile
DATASETS = list(P.datasets)
VARIANTS = list(clip4idc_params.VARIANTS)
SEEDS = list(P.seeds)
# Each dataset's own view of the params (its `data.<dataset>.overrides` applied): what its rules track.
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

# The code each stage runs is an input, as in dvc.yaml's deps: editing it re-runs the stage.
CODE_DATA = "src/clip4idc/data"
CODE_TRAINING = ["src/clip4idc/models", "src/clip4idc/train"]
CODE_DECODE = ["src/clip4idc/models", "src/clip4idc/decode.py"]
CODE_METRICS = ["src/clip4idc/metrics", "src/clip4idc/evaluate.py"]
CODE_REPORT = "src/clip4idc/report"


def section(*names):
    """A params function: the named sections of one dataset's params (Snakemake's rerun trigger)."""
    return lambda wc: [getattr(DP[wc.dataset], name).model_dump() for name in names]


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
