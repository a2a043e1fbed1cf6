"""Two `seqflow retrain word2vec` at once on the same new data: one trains, scores and
decides; the other waits for it (one log line says so), then finds no new data."""

import json
import subprocess
import sys

from mlflow.tracking import MlflowClient

from flows.config import load_config
from flows.word2vec import word2vec
from tests.resume import environment, start, wait_for
from tests.test_retrain import SMOKE, drop_tweets

ARGS = ["retrain", "word2vec", *[a for s in SMOKE for a in ("--set", s)]]
WAITING = "another retrain of word2vec is running; waiting"

# The first retrain, holding the lock once it has trained, waits until the second says it is
# waiting (at most 120 s): on a busy machine the second's start-up can outlast a smoke training.
HOLD = """
import sys, time
from pathlib import Path
import flows.retrain as r
from flows.cli import main
trained = r._check_and_train
def held(*args, **kwargs):
    out = trained(*args, **kwargs)
    deadline = time.monotonic() + 120
    while {waiting!r} not in Path({log!r}).read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    return out
r._check_and_train = held
sys.exit(main({args!r}))
"""


def start_holding(data_dir, log, second_log):
    code = HOLD.format(waiting=WAITING, log=str(second_log), args=ARGS)
    with log.open("w") as out:
        return subprocess.Popen([sys.executable, "-c", code], env=environment(data_dir),
                                stdout=out, stderr=subprocess.STDOUT)  # fmt: skip


def test_a_second_retrain_waits_for_the_first_and_finds_no_new_data(
    prefect_server, data_dir, tmp_path
):
    uri = f"sqlite:///{data_dir / 'mlflow.db'}"
    c = MlflowClient(tracking_uri=uri, registry_uri=uri)
    word2vec(config=load_config("word2vec", "quick", SMOKE))  # version 1, the champion
    drop_tweets(data_dir, "batch-001.csv", 1501, 3001)
    exp_id = c.get_experiment_by_name("word2vec").experiment_id

    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    logs[1].write_text("")
    first = start_holding(data_dir, logs[0], logs[1])
    try:  # the second starts while the first trains on the new data
        wait_for(lambda: "training a challenger" in logs[0].read_text(), 300, "training", first)
        second = start(ARGS, data_dir, logs[1])
        assert second.wait(600) == 0, logs[1].read_text()
        assert first.wait(600) == 0, logs[0].read_text()
    finally:
        for proc in (first, locals().get("second")):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()

    one, two = (log.read_text() for log in logs)
    assert "Traceback" not in one + two, one + two
    assert WAITING not in one and WAITING in two, two
    assert "retrain word2vec: no new data" in two, two
    assert "training a challenger" not in two, two
    # exactly one training: one new run, one new version, at most one move of the alias
    assert len(c.search_runs([exp_id])) == 2
    assert sorted(int(v.version) for v in c.search_model_versions("name = 'word2vec'")) == [1, 2]
    tags = c.get_registered_model("word2vec").tags
    moves = [json.loads(v) for k, v in sorted(tags.items()) if k.startswith("champion_move.")]
    assert [m["to"] for m in moves] in ([1], [1, 2])  # the first model, then at most one
