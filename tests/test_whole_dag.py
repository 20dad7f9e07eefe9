"""`once_per_session` (tests/whole_dag.py): under pytest-xdist the whole-DAG Snakemake run is built by one worker and
read by the others; a failed build is reported by the others, not built again. Workers are simulated here: each is a
basetemp of its own under one root, as xdist lays them out, and the PYTEST_XDIST_WORKER variable it sets."""
from __future__ import annotations

from pathlib import Path

import pytest

from whole_dag import once_per_session


class _Worker:
    """What once_per_session reads of a worker's tmp_path_factory."""

    def __init__(self, root: Path, name: str):
        self.basetemp = root / name
        self.basetemp.mkdir(parents=True)

    def getbasetemp(self) -> Path:
        return self.basetemp

    def mktemp(self, name: str) -> Path:
        path = self.basetemp / name
        path.mkdir()
        return path


def _counting_build(calls: list):
    def build(dest: Path) -> Path:
        calls.append(dest)
        (dest / "outputs.txt").write_text("ran")
        return dest
    return build


def test_under_xdist_the_first_worker_builds_and_every_other_reads_the_same_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw0")
    calls = []
    gw0, gw1 = _Worker(tmp_path, "gw0"), _Worker(tmp_path, "gw1")
    first = once_per_session(gw0, "snake", _counting_build(calls))
    again = once_per_session(gw0, "snake", _counting_build(calls))
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw1")
    other = once_per_session(gw1, "snake", _counting_build(calls))
    assert len(calls) == 1
    assert first == again == other == tmp_path / "snake"
    assert (other / "outputs.txt").read_text() == "ran"


def test_a_build_that_failed_in_one_worker_is_reported_by_the_others_not_built_again(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw0")
    gw0, gw1 = _Worker(tmp_path, "gw0"), _Worker(tmp_path, "gw1")

    def failing(dest: Path) -> Path:
        (dest / "half-written").touch()
        raise RuntimeError("snakemake failed")

    with pytest.raises(RuntimeError, match="snakemake failed"):
        once_per_session(gw0, "snake", failing)
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw1")
    calls = []
    with pytest.raises(pytest.fail.Exception, match="left unfinished: building it failed in another"):
        once_per_session(gw1, "snake", _counting_build(calls))
    assert calls == []


def test_without_xdist_each_call_is_a_plain_build_in_the_sessions_own_temp(tmp_path, monkeypatch):
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    calls = []
    solo = _Worker(tmp_path, "solo")
    built = once_per_session(solo, "snake", _counting_build(calls))
    assert calls == [solo.basetemp / "snake"] and built == solo.basetemp / "snake"
