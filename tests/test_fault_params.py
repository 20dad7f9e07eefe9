"""Faults in params.yaml and expected errors, as `clip4idc` reports them: the key named as the user wrote it
(base, `profiles.<name>...` or a dataset's overrides), found at load whichever profile is active, including
what the CLIP architecture asks of the params; an expected error in one message, its traceback on request."""
from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from clip4idc import cli, params

REPO = Path(__file__).resolve().parents[1]
RAW = yaml.safe_load((REPO / "params.yaml").read_text())
DATASET = "clevr_synth"


def _params_file(tmp_path: Path, edit) -> Path:
    """The repository's params.yaml, edited by `edit(raw)`, in `tmp_path`."""
    raw = copy.deepcopy(RAW)
    edit(raw)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _prepare(tmp_path: Path, params_file: Path, before: tuple[str, ...] = (), after: tuple[str, ...] = ()) -> list[str]:
    """`clip4idc prepare` on a dataset that was never fetched: params are read before any work."""
    return [*before, "prepare", "--dataset", DATASET, "--raw", str(tmp_path / "never-fetched"),
            "--out", str(tmp_path / "prepared"), "--params", str(params_file), "--profile", "smoke", "--no-progress",
            *after]


def _error(capsys, tmp_path: Path, edit) -> str:
    """What `clip4idc prepare --profile smoke` says on stderr with the edited params; it must exit 2 (bad params)."""
    code = cli.main(_prepare(tmp_path, _params_file(tmp_path, edit)))
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ") and "Traceback" not in err
    return err


# -- the key the user wrote; every key checked, whichever profile is active -------------------------------

def test_base_typo_under_a_profile_is_named_not_the_profiles_correct_key(capsys, tmp_path):
    """Base `finetune.epoch` (for `epochs`), which the smoke profile overrides as `epochs`: the base's typo is
    named, with the key it was meant to be; the profile's correct `epochs` is not blamed."""
    def edit(raw):
        raw["finetune"]["epoch"] = raw["finetune"].pop("epochs")
    err = _error(capsys, tmp_path, edit)
    assert "  finetune.epoch: unknown key (did you mean 'epochs'?)" in err.splitlines()
    assert "profiles.smoke.finetune.epochs" not in err


def test_profile_typo_suggests_the_closest_key():
    raw = copy.deepcopy(RAW)
    raw["profiles"]["smoke"]["finetune"]["epoch"] = 1
    with pytest.raises(params.ParamsError, match=r"^profiles\.smoke\.finetune\.epoch: no such key in the base "
                                                 r"params .*\(did you mean 'epochs'\?\)$"):
        params.resolve(raw, "smoke")


def test_wrong_base_value_that_the_active_profile_overrides_is_refused(capsys, tmp_path):
    """Base `finetune.epochs: "eight"`, overridden by the smoke profile: refused, the base key named."""
    def edit(raw):
        raw["finetune"]["epochs"] = "eight"
    assert "epochs" in RAW["profiles"]["smoke"]["finetune"]   # the active profile sets its own
    err = _error(capsys, tmp_path, edit)
    assert "(the base params, before any profile) is invalid" in err
    assert "  finetune.epochs: Input should be a valid integer (got 'eight')" in err.splitlines()


def _refused_naming(edit, named: str) -> None:
    """params.yaml with `edit` applied is refused under the smoke profile, one line naming the key `named`."""
    raw = copy.deepcopy(RAW)
    edit(raw)
    with pytest.raises(params.ParamsError) as caught:
        params.resolve(raw, "smoke")
    assert any(line.startswith(f"  {named}: ") for line in str(caught.value).splitlines()), str(caught.value)


@pytest.mark.parametrize("edit, named", [
    # a profile other than the active one (smoke)
    (lambda raw: raw["profiles"]["paper"]["adapt"].update(epochs="twelve"), "profiles.paper.adapt.epochs"),
    # the active profile's own value: its key, not the base's
    (lambda raw: raw["profiles"]["smoke"]["finetune"].update(epochs=0), "profiles.smoke.finetune.epochs"),
    # a dataset's overrides written in a profile
    (lambda raw: raw["profiles"]["paper"]["data"]["ier"]["overrides"]["adapt"].update(epochs=-1),
     "profiles.paper.data.ier.overrides.adapt.epochs"),
])
def test_every_profile_is_checked_and_its_keys_named_as_written(edit, named):
    _refused_naming(edit, named)


def test_a_check_across_sections_names_the_keys_as_written():
    raw = copy.deepcopy(RAW)
    raw["profiles"]["smoke"]["decode"]["max_len"] = RAW["model"]["max_tokens"] + 1
    with pytest.raises(params.ParamsError, match=rf"profiles\.smoke\.decode\.max_len \({RAW['model']['max_tokens'] + 1}\) "
                                                 rf"exceeds model\.max_tokens \({RAW['model']['max_tokens']}\)"):
        params.resolve(raw, "smoke")


# -- params checked against the CLIP architecture at load ----------------------------------------------------

def test_intra_layers_beyond_the_architecture_is_refused_at_load(capsys, tmp_path):
    """model.intra_layers 7 for the 4-block clip4idc-tiny: refused by the first stage that reads params,
    not by `adapt` once data are prepared and CLIP pretrained."""
    def edit(raw):
        raw["model"]["intra_layers"] = 7
    err = _error(capsys, tmp_path, edit)
    assert ("  model.intra_layers: 7 is out of range for the 4 vision blocks of 'clip4idc-tiny' (model.arch): "
            "must be between 1 and 3") in err


@pytest.mark.parametrize("edit, named", [
    (lambda raw: raw["profiles"]["smoke"].update(model={"intra_layers": 4}), "profiles.smoke.model.intra_layers"),
    (lambda raw: raw["prepare"].update(image_size=32), "prepare.image_size"),
    (lambda raw: raw["data"][DATASET]["overrides"].update(prepare={"image_size": 224}),
     f"data.{DATASET}.overrides.prepare.image_size"),
    # the architecture changed by a profile, the size left at the base's: the base's size is named
    (lambda raw: raw["profiles"]["smoke"].update(model={"arch": "ViT-B-32-quickgelu", "intra_layers": 9}),
     "prepare.image_size"),
    (lambda raw: raw["model"].update(arch="clip4idc-tiniest"), "model.arch"),
])
def test_params_that_contradict_the_architecture_are_refused(edit, named):
    _refused_naming(edit, named)


def test_architecture_configs_are_open_clips(monkeypatch):
    """params reads the configs from open_clip's files and ours (importing open_clip would slow every command):
    the same configs as open_clip gives models/build.py, for every file of either folder."""
    import open_clip

    from clip4idc.models.build import register_model_configs
    register_model_configs()
    files = [*(Path(open_clip.__file__).parent / "model_configs").glob("*.json"), *params.MODEL_CONFIG_DIR.glob("*.json")]
    names = sorted({f.stem for f in files})
    assert {"clip4idc-tiny", "ViT-B-32-quickgelu"} <= set(names)
    expected = {n: open_clip.get_model_config(n) for n in names}
    monkeypatch.delitem(sys.modules, "open_clip")   # as in a command that has not imported it
    assert {n: params._architecture_config(n) for n in names} == expected


# -- expected errors in a line or two; their traceback on request --------------------------------------------

def test_openai_weights_offline_is_a_short_message_with_the_advice(tmp_path):
    """model.pretrained: openai without network and with an empty cache: `clip4idc pretrain` says so and how
    to get the weights, in two lines, without a traceback."""
    def edit(raw):
        raw["model"].update(arch="ViT-B-32-quickgelu", pretrained="openai", intra_layers=9)
        raw["prepare"]["image_size"] = 224
    path = _params_file(tmp_path, edit)
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    env.pop("CLIP4IDC_DEBUG", None)
    run = subprocess.run([sys.executable, "-m", "clip4idc.cli", "pretrain", "--data", str(tmp_path / "none"),
                          "--out", str(tmp_path / "clip.pt"), "--log", str(tmp_path / "pretrain.json"),
                          "--params", str(path), "--no-progress"],
                         capture_output=True, text=True, env=env, timeout=300)
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 1, run.stderr
    assert len(lines) == 2 and "Traceback" not in run.stderr, run.stderr
    assert lines[0].startswith("error: OpenAI CLIP weights for 'ViT-B-32-quickgelu' could not be loaded")
    assert "open_clip.create_model('ViT-B-32-quickgelu', pretrained='openai')" in lines[1]
    assert "set `model.pretrained` to that file's path" in lines[1]


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_flag_raises_params_errors_with_their_traceback(tmp_path, where):
    """`clip4idc --debug prepare ...` (a global flag) or `clip4idc prepare ... --debug`."""
    path = _params_file(tmp_path, lambda raw: raw["model"].update(intra_layers=7))
    with pytest.raises(params.ParamsError, match=r"model\.intra_layers: 7"):
        cli.main(_prepare(tmp_path, path, **{where: ("--debug",)}))


def test_debug_env_raises_input_errors_with_their_traceback(tmp_path, monkeypatch, capsys):
    """CLIP4IDC_DEBUG=1 (for a stage that Snakemake or DVC runs: its command line is fixed): a stage's
    expected error (here: the dataset was never fetched) is raised, not printed."""
    path = _params_file(tmp_path, lambda raw: None)
    assert cli.main(_prepare(tmp_path, path)) == 1
    message = capsys.readouterr().err.removeprefix("error: ").strip()
    monkeypatch.setenv("CLIP4IDC_DEBUG", "1")
    with pytest.raises(cli.INPUT_ERRORS) as caught:
        cli.main(_prepare(tmp_path, path))
    assert str(caught.value) == message
