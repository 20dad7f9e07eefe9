"""Faults around checkpoints and temporary files: what a truncated checkpoint, a killed save and a killed
`prepare` leave, and what the next run makes of it.

- a checkpoint that cannot be used (truncated, of another kind) stops its consumer with one line naming the
  file and how to rebuild it, never a traceback;
- a truncated resume checkpoint is moved aside and the run starts afresh, ending as a fresh run ends;
- a save killed midway leaves its temporary file, which the next save of that path removes (only that
  path's, and only a dead writer's);
- a killed `prepare` leaves no pool worker behind, and its temporary folder goes at the next run.

The CLI runs use tests/test_train_loop.py's smoke data (its `smoke` fixture and helpers).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import test_train_loop as loop_tests
from clip4idc import cli
from clip4idc.data.prepare import prepare
from clip4idc.runtime import save_checkpoint

CLIP4IDC, DATASET, REPO = loop_tests.CLIP4IDC, loop_tests.DATASET, loop_tests.REPO
# Smoke data and CLIP weights (clip.pt), params whose smoke profile trains 2 epochs (module-scoped fixture).
smoke = loop_tests.smoke


@pytest.fixture(scope="module")
def adapted(smoke) -> Path:
    """A whole adapt run: the adaptation checkpoint, and what a fresh run ends with."""
    loop_tests._run(loop_tests._command(smoke, "adapt", "adapt-fresh"))
    return smoke / "adapt-fresh.pt"


def _truncated(source: Path, at: Path) -> Path:
    """`source` cut to half its bytes at `at`, as a copy cut short or a full disk leaves it."""
    at.parent.mkdir(parents=True, exist_ok=True)
    data = source.read_bytes()
    at.write_bytes(data[:len(data) // 2])
    return at


def _finetune(smoke: Path, out: Path, variant: str, start: list) -> list:
    return ["finetune", "--dataset", DATASET, "--data", smoke / "prep", "--variant", variant, "--seed", "3", *start,
            "--out", out / "ft.pt", "--log", out / "ft.json", "--live", out / "live",
            "--params", smoke / "params.yaml", "--profile", "smoke", "--no-progress"]


# ----------------------------------------------------------------------------- unusable checkpoints

@pytest.mark.slow
def test_a_truncated_adaptation_checkpoint_stops_finetune_with_one_line(smoke, adapted, tmp_path):
    """At its place in the pipeline, so the message names the Snakemake target and the DVC stage to rerun."""
    bad = _truncated(adapted, tmp_path / "models" / DATASET / "adapt" / "model.pt")
    cmd = [*CLIP4IDC, *_finetune(smoke, tmp_path, "adapt", ["--adapted", bad]), "--threads", "2"]
    result = subprocess.run(list(map(str, cmd)), capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(f"error: {bad} cannot be read as a "
                                                                        f"checkpoint ("), result.stderr
    assert (f"delete it and rerun the stage that writes it (from the project folder: "
            f"`snakemake models/{DATASET}/adapt/model.pt` or `dvc repro adapt@{DATASET}`)") in result.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["models"]  # no output, not even a temporary one
    assert bad.stat().st_size == adapted.stat().st_size // 2   # the file itself left as it was


@pytest.mark.slow
@pytest.mark.parametrize("case", ["clip weights as --adapted", "adaptation checkpoint as --clip",
                                  "truncated clip weights"])
def test_a_checkpoint_of_another_kind_or_truncated_is_one_line_naming_it(smoke, adapted, tmp_path, case, capsys):
    if case == "clip weights as --adapted":
        bad, variant, start = smoke / "clip.pt", "adapt", "--adapted"
        expected = (f"{bad} is not an adaptation checkpoint (kind=None); the adapt stage writes them, "
                    f"models/<dataset>/adapt/model.pt")
    elif case == "adaptation checkpoint as --clip":
        bad, variant, start = adapted, "no-adapt", "--clip"
        expected = f"{bad} is a checkpoint of kind 'adapt', not CLIP weights"
    else:
        bad = _truncated(smoke / "clip.pt", tmp_path / "models" / "pretrain" / "clip.pt")
        variant, start = "clip-ft", "--clip"
        expected = "`snakemake models/pretrain/clip.pt` or `dvc repro pretrain`"
    out = tmp_path / "out"
    assert cli.main(list(map(str, _finetune(smoke, out, variant, [start, bad])))) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {bad} ") and expected in err, err
    assert not out.exists()


# ----------------------------------------------------------------------------- an unusable resume checkpoint

@pytest.mark.slow
def test_a_truncated_resume_checkpoint_is_set_aside_and_the_run_ends_as_a_fresh_one(smoke, adapted):
    out = smoke / "adapt-truncated.pt"
    resume = _truncated(adapted, Path(f"{out}.resume"))
    truncated = resume.read_bytes()
    aside = Path(f"{out}.resume.corrupt")
    aside.write_bytes(b"an older unusable resume checkpoint")

    stdout = loop_tests._run(loop_tests._command(smoke, "adapt", "adapt-truncated"))
    assert f"{resume} cannot be read as a checkpoint (" in stdout
    assert f": moved to {aside}, starting afresh" in stdout and "resuming from" not in stdout
    # Set aside, not lost (the older one replaced); the run's own resume checkpoint removed as ever.
    assert aside.read_bytes() == truncated and not resume.exists()
    loop_tests._same_state(adapted, out)
    for kind in ("log.json", "metrics.json"):
        assert (smoke / f"adapt-fresh.{kind}").read_text() == (smoke / f"adapt-truncated.{kind}").read_text()
    assert loop_tests._tree(smoke / "adapt-fresh.live") == loop_tests._tree(smoke / "adapt-truncated.live")


# ----------------------------------------------------------------------------- a killed save

_KILLED_SAVE = '''
import os, signal, sys, torch
from clip4idc.runtime import save_checkpoint

class KillHere:
    """Pickled after the weights: the process is killed in the middle of writing the checkpoint."""
    def __reduce__(self):
        os.kill(os.getpid(), signal.SIGKILL)

save_checkpoint(sys.argv[1], {"model": {"w": torch.zeros(1 << 16)}, "then": KillHere()})
'''

_SLOW_SAVE = '''
import sys
from clip4idc.io import atomic_path

with atomic_path(sys.argv[1]) as tmp:
    tmp.write_bytes(b"written by a save under way")
    print(tmp, flush=True)
    sys.stdin.read()   # until the test lets it finish
'''


def _python(tmp_path: Path, name: str, code: str) -> Path:
    script = tmp_path / "scripts" / name
    script.parent.mkdir(exist_ok=True)
    script.write_text(code)
    return script


def _leftovers(folder: Path, name: str) -> list[Path]:
    """Temporary siblings of `folder / name` (`.<name>.<...>.tmp`), not those of a longer name beside it."""
    return sorted(p for p in folder.iterdir() if p.name.startswith(f".{name}.") and p.name.endswith(".tmp")
                  and not p.name.startswith(f".{name}.resume."))


def test_a_killed_save_leaves_a_temporary_file_that_the_next_save_of_that_path_removes(tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    target, other = folder / "model.pt", folder / "model.pt.resume"
    killed = _python(tmp_path, "killed.py", _KILLED_SAVE)
    for path in (target, other):
        result = subprocess.run([sys.executable, str(killed), str(path)], capture_output=True, text=True)
        assert result.returncode == -signal.SIGKILL, result.stderr
    stale = _leftovers(folder, "model.pt")
    stale_other = _leftovers(folder, "model.pt.resume")
    assert len(stale) == 1 and len(stale_other) == 1 and not target.exists()

    save_checkpoint(target, {"w": torch.ones(3)})
    assert torch.equal(torch.load(target, weights_only=True)["w"], torch.ones(3))
    assert not any(p.exists() for p in stale)                      # the killed save's: removed
    assert _leftovers(folder, "model.pt.resume") == stale_other   # another path's: left to that path's next save

    # A save of the same path under way in another process: its temporary file must survive the next save.
    live = subprocess.Popen([sys.executable, str(_python(tmp_path, "slow.py", _SLOW_SAVE)), str(target)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        live_tmp = Path(live.stdout.readline().strip())
        assert live_tmp.parent == folder and live_tmp.is_file()
        save_checkpoint(target, {"w": torch.zeros(3)})
        assert live_tmp.is_file() and torch.equal(torch.load(target, weights_only=True)["w"], torch.zeros(3))
        live.stdin.close()    # the live save ends as it should: renamed into place
        assert live.wait(timeout=60) == 0
    finally:
        if live.poll() is None:
            live.kill()
            live.wait()
    assert target.read_bytes() == b"written by a save under way" and _leftovers(folder, "model.pt") == []


# ----------------------------------------------------------------------------- a killed prepare

_STUCK_PREPARE = '''
import os, sys, time
from pathlib import Path

import numpy as np

from clip4idc.data import prepare as P


def slow_chunk(root, paths, size):
    """Stands for a chunk of large images: long enough for the test to stop the parent meanwhile."""
    Path(sys.argv[3], str(os.getpid())).touch()
    time.sleep(float(sys.argv[4]))
    return np.zeros((len(paths), size, size, 3), dtype=np.uint8), []


if __name__ == "__main__":
    P._load_chunk, P._CHUNK = slow_chunk, 2
    P.prepare(sys.argv[1], sys.argv[2], reader="clevr_change", image_size=32, empty_references="drop", workers=2,
              progress=False)
'''


def _alive(pid: int) -> bool:
    """Whether process `pid` still runs (an exited one nobody has reaped yet, a zombie, does not)."""
    try:
        os.kill(pid, 0)
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (ProcessLookupError, FileNotFoundError):
        return False


def _wait(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_killed_prepare_leaves_no_worker_and_its_temporary_folder_goes(data_synth_root, data_prepared_dir,
                                                                          tmp_path, sig):
    out, started = tmp_path / "prepared" / DATASET, tmp_path / "started"
    started.mkdir()
    chunk_seconds = 120 if sig == signal.SIGKILL else 1   # a killed parent must not wait for its workers
    cmd = [sys.executable, _python(tmp_path, "stuck.py", _STUCK_PREPARE), data_synth_root, out, started,
           chunk_seconds]
    # Its output to a file: a worker that outlives it would hold a pipe open, and reading it would never end.
    log = tmp_path / "prepare.log"
    with log.open("w") as sink:
        proc = subprocess.Popen(list(map(str, cmd)), stdout=sink, stderr=subprocess.STDOUT)
    try:
        assert _wait(lambda: any(started.iterdir()) or proc.poll() is not None, 120)
        temps = [p for p in out.parent.iterdir() if p.name.startswith(f".{DATASET}.")]
        assert len(temps) == 1 and (temps[0] / "images.npy").is_file(), log.read_text()
        proc.send_signal(sig)
        proc.wait(timeout=120)
        output = log.read_text()
        workers = [int(p.name) for p in started.iterdir()]
        assert workers and _wait(lambda: not any(map(_alive, workers)), 10), \
            f"pool workers outlived their parent: {[w for w in workers if _alive(w)]}"
        assert temps[0].exists() == (sig == signal.SIGKILL)   # a SIGTERM'd run removes its own
        # SIGTERM: a clean exit, with the status a shell gives a process killed by it.
        assert proc.returncode == (-sig if sig == signal.SIGKILL else 128 + sig), output
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in (int(p.name) for p in started.iterdir()):   # this test's, should any outlive the assertions
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)

    summary = prepare(data_synth_root, out, reader="clevr_change", image_size=32, empty_references="drop",
                      progress=False)
    assert [p.name for p in out.parent.iterdir()] == [DATASET]   # the killed run's folder removed
    assert json.loads((data_prepared_dir / "summary.json").read_text()) == summary
    assert (out / "images.npy").read_bytes() == (data_prepared_dir / "images.npy").read_bytes()
