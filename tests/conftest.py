"""Shared fixtures: the dataset mirror, an isolated data folder + MLflow store, Prefect."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
MIRROR = Path(os.environ.get("SEQFLOW_MIRROR") or REPO.parent / "shared" / "datasets").resolve()

os.environ["SEQFLOW_MIRROR"] = str(MIRROR)
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.setdefault("NLTK_DATA", str(MIRROR / "nltk_data"))
os.environ.setdefault("TQDM_DISABLE", "1")


def pytest_sessionstart(session):
    if not (MIRROR / "tweets_hate_speech" / "train.csv").is_file():
        raise pytest.UsageError(
            f"dataset mirror not found at {MIRROR}: set SEQFLOW_MIRROR to a folder laid out "
            "like shared/datasets/"
        )


@pytest.fixture
def data_dir(tmp_path, monkeypatch) -> Path:
    """A fresh data folder (cache, stages, SQLite MLflow store) for one test."""
    folder = tmp_path / "data"
    monkeypatch.setenv("SEQFLOW_DATA_DIR", str(folder))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return folder


@pytest.fixture(scope="session")
def prefect_server():
    """One temporary Prefect server for the whole session (it takes ~10 s to start)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield


@pytest.fixture(scope="module")
def one_torch_thread():
    """For modules of tiny tensors, where extra intra-op threads only contend; restored after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
