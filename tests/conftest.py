import os
import shutil
import sys
from pathlib import Path

# Offline by design: never wait on a model hub, never send analytics, never open a window.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
sys.path.insert(0, str(Path(__file__).parent))  # tests/workflow_helpers.py, tests/loopback.py

import pytest  # noqa: E402

# System tools some tests need. Where one is missing those tests skip, saying why; in CI
# (CLIP4IDC_CI=1, set by .ci/run, which installs them) they fail instead, so nothing is skipped silently.
TOOLS = {
    "needs_java": ("java", "pycocoevalcap's tokenizer and METEOR run on Java: apt-get install default-jre-headless"),
    "needs_pdflatex": ("pdflatex", "results/tables.pdf is compiled with pdflatex: apt-get install "
                                   "texlive-latex-base texlive-latex-recommended"),
}


def pytest_configure(config):
    for marker, (tool, why) in TOOLS.items():
        config.addinivalue_line("markers", f"{marker}: needs {tool} on PATH ({why})")


def require(marker: str) -> None:
    """Skip (fail in CI) unless the tool of `marker` is on PATH; for fixtures, which markers do not reach."""
    tool, why = TOOLS[marker]
    if shutil.which(tool) is None:
        if os.environ.get("CLIP4IDC_CI") == "1":
            pytest.fail(f"{tool} is not on PATH, and CI must run this test ({why})")
        pytest.skip(f"{tool} not on PATH ({why})")


def pytest_runtest_setup(item):
    for marker in TOOLS:
        if item.get_closest_marker(marker):
            require(marker)


# A tiny embedded dataset and its prepared directory, built once per session for the data tests.
DATA_SYNTH_ARGS = dict(seed=3, n_train=10, n_val=5, n_test=5, width=60, height=40, min_objects=2, max_objects=4,
                       n_change_captions=3, n_no_change_captions=2, progress=False)


@pytest.fixture(scope="session")
def data_synth_root(tmp_path_factory):
    from clip4idc.data.synthetic import synthesize
    root = tmp_path_factory.mktemp("data") / "synth"
    synthesize(root, **DATA_SYNTH_ARGS)
    return root


@pytest.fixture(scope="session")
def data_prepared_dir(data_synth_root, tmp_path_factory):
    from clip4idc.data.prepare import prepare
    out = tmp_path_factory.mktemp("data") / "prepared"
    prepare(data_synth_root, out, reader="clevr_change", image_size=32, empty_references="drop", progress=False)
    return out


@pytest.fixture
def server():
    """A loopback HTTP server (tests/loopback.py) for the download tests."""
    from loopback import Server
    s = Server()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


@pytest.fixture(scope="session")
def snakemake_run(tmp_path_factory):
    """The smoke DAG run by Snakemake (tests/whole_dag.py): read by the Snakemake tests and compared with DVC's
    run by the DVC tests, which pytest-xdist may run in another worker; built once either way."""
    from whole_dag import once_per_session, run_snakemake
    return once_per_session(tmp_path_factory, "snake", run_snakemake)
