# Shared names for the rules: paths, variants, seeds. No stage logic lives here.

PROFILE = P.profile
VARIANTS = list(clip4idc_params.VARIANTS)
SEEDS = list(P.finetune.seeds)
RAW = "data/raw/clevr_synth"
PREPARED = "data/prepared/clevr_synth"
CLIP_WEIGHTS = "models/pretrain/clip.pt"
# Every command reads params.yaml under the profile chosen here, exactly as in dvc.yaml.
CLI = f"clip4idc {{stage}} --params params.yaml --profile {PROFILE}"
CONDA_ENV = "../envs/clip4idc.yaml"

# The code each stage runs is an input, as in dvc.yaml's deps: editing it re-runs the stage.
CODE_DATA = "src/clip4idc/data"
CODE_TRAINING = ["src/clip4idc/models", "src/clip4idc/train"]
CODE_DECODE = ["src/clip4idc/models", "src/clip4idc/decode.py"]
CODE_METRICS = "src/clip4idc/metrics"
CODE_REPORT = "src/clip4idc/report"


wildcard_constraints:
    variant="|".join(VARIANTS),
    seed=r"\d+",
