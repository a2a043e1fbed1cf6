"""What a SIGKILL leaves behind, and what the next command does with it: the killed run's
child runs are marked KILLED with it, Prefect's temporary server does not outlive its command,
and a damaged newest checkpoint costs one epoch (the one before it is kept)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests import resume

SETS = ['train.kinds=["gru", "lstm"]', "windows.n_train=4096", "windows.n_test=256",
        "train.epochs=20", "train.checkpoint_every=20", "train.hidden=16",
        "evaluate.n_chars=5"]  # fmt: skip
CHARLM = ["run", "charlm", "--profile", "quick", *[a for s in SETS for a in ("--set", s)]]
W2V = ["run", "word2vec", "--profile", "quick", "--set", "train.epochs=40",
       "--set", "train.max_steps_per_epoch=20"]  # fmt: skip
AIRLINE = ["run", "airline", "--profile", "quick", "--set", "train.epochs=2"]


def test_the_killed_runs_child_runs_are_marked_killed_by_the_next_run(prefect_server, tmp_path):
    data = tmp_path / "data"

    def lstm_started_without_checkpoint(paths):  # gru done (its final checkpoint), lstm running
        parents = resume.parent_runs(data, "charlm") if len({p.parent for p in paths}) == 1 else []
        if not parents:
            return False
        return "lstm" in resume.children(data, parents[0].info.run_id, "charlm")

    proc = resume.kill_when(data, "charlm", CHARLM, tmp_path / "killed.log",
                            lstm_started_without_checkpoint)  # fmt: skip
    assert proc.returncode == -signal.SIGKILL
    (killed,) = resume.parent_runs(data, "charlm")
    old = resume.children(data, killed.info.run_id, "charlm")
    assert killed.info.status == old["lstm"].info.status == "RUNNING"  # the fault
    assert old["gru"].info.status == "FINISHED"

    assert resume.run(CHARLM, data, tmp_path / "again.log") == 0, (
        tmp_path / "again.log"
    ).read_text()
    killed_now, again = resume.parent_runs(data, "charlm")
    old = resume.children(data, killed.info.run_id, "charlm")
    assert killed_now.info.status == "KILLED" and again.info.status == "FINISHED"
    assert old["lstm"].info.status == "KILLED"  # not left RUNNING with no process behind it
    resumed_by = resume.children(data, again.info.run_id, "charlm")["gru"].info.run_id
    assert f"parent run {killed.info.run_id} was killed; resumed by run {resumed_by}" in (
        old["lstm"].data.tags["failure_reason"])  # fmt: skip
    assert old["gru"].info.status == "FINISHED"
    everything = resume.store(data).search_runs([killed.info.experiment_id])
    assert not [r.info.run_name for r in everything if r.info.status == "RUNNING"]


def test_a_damaged_newest_checkpoint_costs_one_epoch(prefect_server, tmp_path):
    data = tmp_path / "data"

    def third_epoch_written(paths):
        return any(p.name >= "epoch-0003.pt" for p in paths)

    proc = resume.kill_when(data, "word2vec", W2V, tmp_path / "killed.log", third_epoch_written)
    assert proc.returncode == -signal.SIGKILL
    kept = resume.checkpoints(data, "word2vec")
    newest = int(kept[-1].stem.split("-")[1])
    # the one before the newest is kept (a third, older one may still be going: the kill can
    # land between the newest's read-back and the pruning)
    assert [p.name for p in kept[-2:]] == [f"epoch-{newest - 1:04d}.pt", f"epoch-{newest:04d}.pt"]
    assert len(kept) <= 3
    with open(kept[-1], "r+b") as f:  # torn: the disk lost its second half
        f.truncate(kept[-1].stat().st_size // 2)

    log = tmp_path / "resumed.log"
    assert resume.run(W2V, data, log) == 0, log.read_text()
    assert f"resuming after epoch {newest - 1} from {kept[-2]}" in log.read_text()
    killed, resumed = resume.parent_runs(data, "word2vec")
    assert killed.info.status == "KILLED" and resumed.info.status == "FINISHED"
    assert int(resumed.data.tags["resumed_from_epoch"]) == newest - 1


def _children(pid: int) -> dict[int, str]:
    """pid -> command line of each live child of `pid`."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if int(fields[1]) == pid and fields[0] not in ("Z", "X"):
            found[int(entry.name)] = cmd
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] not in ("Z", "X")


def test_the_temporary_prefect_server_goes_when_its_command_is_killed(tmp_path):
    data = tmp_path / "data"
    cleared = ("PREFECT_API_URL", "MLFLOW_TRACKING_URI")  # Prefect's temporary server, our store
    env = {k: v for k, v in os.environ.items() if k not in cleared}
    env |= {"SEQFLOW_DATA_DIR": str(data), "OMP_NUM_THREADS": "1"}
    with (tmp_path / "killed.log").open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "flows.cli", *AIRLINE], env=env,
                                stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    servers, watchers = {}, []
    try:  # the flow runs (a stage folder exists): the server is up, serving it
        resume.wait_for(lambda: (data / "stages").exists(), 300, "a stage", proc)
        kids = _children(proc.pid)
        servers = {p: c for p, c in kids.items() if "prefect.server.api.server" in c}
        watchers = [p for p, c in kids.items() if "flows.ephemeral" in c]
        assert len(servers) == 1 and len(watchers) == 1, kids
    finally:
        proc.kill()
        proc.wait(timeout=60)
    try:
        gone = time.monotonic()
        resume.wait_for(lambda: not any(map(_alive, [*servers, *watchers])), 30, "server exit")
        print(f"temporary server gone {time.monotonic() - gone:.1f} s after its command's SIGKILL")
    finally:
        for pid in [*servers, *watchers]:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
