"""Faults of the machine, as a user meets them with `seqflow run|retrain`: a device it lacks,
a tracking server that does not answer, a read-only data folder, a disk that fills up. Each is
one line on stderr naming the fault and the fix, no traceback; nothing half-written is left
and no MLflow run or model version is made by a refused command."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

W2V = ["run", "word2vec", "--profile", "quick", "--set", "data.limit_rows=1500",
       "--set", "train.max_steps_per_epoch=4", "--set", "train.epochs=2"]  # fmt: skip
AIRLINE = ["run", "airline", "--profile", "quick", "--set", "train.epochs=2"]
RETRAIN = ["retrain", "word2vec", "--set", "data.limit_rows=1500"]


@pytest.fixture
def env(prefect_server, data_dir):
    from prefect.settings import PREFECT_API_URL

    out = dict(os.environ, SEQFLOW_DATA_DIR=str(data_dir), PREFECT_API_URL=PREFECT_API_URL.value(),
               OMP_NUM_THREADS="1")  # fmt: skip
    out.pop("MLFLOW_TRACKING_URI", None)
    return out


def seqflow(*args, env, timeout=300) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "flows.cli", *args], capture_output=True,
                          text=True, env=env, timeout=timeout)  # fmt: skip
    return done, time.monotonic() - started


def one_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = [ln for ln in stderr.splitlines() if ln.startswith("seqflow: ")]
    assert len(lines) == 1, stderr[-3000:]
    return lines[0]


def nothing_written(data_dir: Path) -> None:
    assert not (data_dir / "stages").exists()
    assert not (data_dir / "mlflow.db").exists()  # no store opened, so no run
    assert not list(data_dir.rglob(".tmp-*"))


@pytest.mark.parametrize("args", [AIRLINE, RETRAIN], ids=["run", "retrain"])
def test_a_device_the_machine_lacks_is_refused_before_any_stage(env, data_dir, args):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    done, took = seqflow(*args, "--set", "train.device=cuda", env=env, timeout=30)
    line = one_line(done.stderr)
    print(f"device refusal ({args[0]}): {took:.1f} s")
    assert done.returncode == 2, done.stderr[-3000:]
    assert "train.device=cuda" in line and "no CUDA device" in line, line
    assert "--set train.device=auto" in line and "--set train.device=cpu" in line, line
    nothing_written(data_dir)


class Silent:
    """A port that accepts connections and never answers."""

    def __enter__(self) -> int:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        return self.sock.getsockname()[1]

    def __exit__(self, *exc) -> None:
        self.sock.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again: nothing listens there


@pytest.mark.parametrize("server", ["nothing listens", "never answers"])
@pytest.mark.parametrize("args", [AIRLINE, RETRAIN], ids=["run", "retrain"])
def test_an_unreachable_tracking_server_is_refused_before_any_stage(env, data_dir, args, server):
    silent = Silent()
    port = silent.__enter__() if server == "never answers" else free_port()
    try:
        uri = f"http://127.0.0.1:{port}"
        done, took = seqflow(*args, env=env | {"MLFLOW_TRACKING_URI": uri}, timeout=30)
    finally:
        silent.__exit__() if server == "never answers" else None
    line = one_line(done.stderr)
    print(f"tracking URI refusal ({args[0]}, {server}): {took:.1f} s")
    assert done.returncode == 2, done.stderr[-3000:]
    assert f"MLflow tracking server at {uri} does not answer" in line, line
    assert "start it or unset MLFLOW_TRACKING_URI" in line, line
    assert "within 5 s" in line if server == "never answers" else "refused" in line.lower()
    nothing_written(data_dir)


def mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True)


def umount(path: Path) -> None:
    subprocess.run(["umount", str(path)], capture_output=True)


@pytest.fixture
def read_only(data_dir):
    """The data folder as a read-only bind mount of itself (chmod does not stop root)."""
    data_dir.mkdir(parents=True)
    try:
        mount("--bind", str(data_dir), str(data_dir))
    except (OSError, subprocess.CalledProcessError) as err:
        pytest.skip(f"cannot bind-mount here: {err}")
    try:
        mount("-o", "remount,ro,bind", str(data_dir))
        yield data_dir
    finally:
        umount(data_dir)


def test_a_read_only_data_folder_is_refused_before_any_stage(env, read_only):
    done, took = seqflow(*AIRLINE, env=env, timeout=30)
    line = one_line(done.stderr)
    assert done.returncode == 2, done.stderr[-3000:]
    assert f"{read_only} is on a read-only file system" in line, line
    assert "SEQFLOW_DATA_DIR" in line, line
    assert not list(read_only.iterdir())


def fill(folder: Path) -> Path:
    """Write into `folder` until its file system is full; returns the filler file."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as out:  # unbuffered: close() has nothing to write
        try:
            while True:
                out.write(b"\0" * 4096)
        except OSError:
            pass
    return filler


@pytest.fixture
def full_tokenize_folder(data_dir):
    """word2vec's tokenize stage folder on a small tmpfs that is full: the stages before it
    (and MLflow) have room, tokenize has none."""
    folder = data_dir / "stages" / "word2vec" / "tokenize"
    folder.mkdir(parents=True)
    try:
        mount("-t", "tmpfs", "-o", "size=256k", "tmpfs", str(folder))
    except (OSError, subprocess.CalledProcessError) as err:
        pytest.skip(f"cannot mount a tmpfs here: {err}")
    try:
        yield folder, fill(folder)
    finally:
        umount(folder)


def test_a_full_disk_at_tokenize_is_one_line_and_a_rerun_after_freeing_space_succeeds(
    env, data_dir, full_tokenize_folder
):
    folder, filler = full_tokenize_folder
    done, _ = seqflow(*W2V, env=env)
    line = one_line(done.stderr)
    assert done.returncode == 1, done.stderr[-3000:]
    assert line.startswith(f"seqflow: no space left in {folder} ("), line
    assert "free some space on that disk" in line and "run the same command again" in line
    assert [p.name for p in folder.iterdir()] == ["filler"]  # no .tmp-*, no .parts
    assert not list((data_dir / "stages").rglob(".tmp-*"))

    filler.unlink()
    done, _ = seqflow(*W2V, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    uri = f"sqlite:///{data_dir / 'mlflow.db'}"
    c = MlflowClient(tracking_uri=uri, registry_uri=uri)
    runs = c.search_runs([c.get_experiment_by_name("word2vec").experiment_id])
    assert sorted(r.info.status for r in runs) == ["FAILED", "FINISHED"]  # no other run
    assert len(c.search_model_versions("name = 'word2vec'")) == 1
    (tokens,) = [p for p in folder.iterdir() if not p.name.startswith(".")]
    assert (tokens / "manifest.json").is_file() and (tokens / "tokens.parquet").is_file()
