"""Faults in params.yaml as `clip4idc` reports them: the key named as the user wrote it (base,
`profiles.<name>...` or a dataset's overrides), found at load whichever profile is active."""
from __future__ import annotations

import copy
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
    raw = copy.deepcopy(RAW)
    edit(raw)
    with pytest.raises(params.ParamsError) as caught:
        params.resolve(raw, "smoke")
    assert any(line.startswith(f"  {named}: ") for line in str(caught.value).splitlines()), str(caught.value)


def test_a_check_across_sections_names_the_keys_as_written():
    raw = copy.deepcopy(RAW)
    raw["profiles"]["smoke"]["decode"]["max_len"] = RAW["model"]["max_tokens"] + 1
    with pytest.raises(params.ParamsError, match=rf"profiles\.smoke\.decode\.max_len \({RAW['model']['max_tokens'] + 1}\) "
                                                 rf"exceeds model\.max_tokens \({RAW['model']['max_tokens']}\)"):
        params.resolve(raw, "smoke")
