"""Lineage: stage keys from named parts, `seqflow explain` on a copy of the code, and logging from
many task threads into one run."""

import os
import shutil
import subprocess
import sys

from mlflow.tracking import MlflowClient
from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.settings import get_current_settings

from tasks.engine import lineage, tracking
from tests.conftest import REPO

PARTS = {
    "inputs": {"rows": "aaa"},
    "params": {"stemmer": "snowball", "stopwords": "english"},
    "code": {"tasks/text.py": "1", "tasks/engine/stage.py": "2"},
    "libs": {"nltk": "3.9", "pyarrow": "21.0"},
}


def changed(**parts):
    return {**PARTS, **parts}


def test_differences_name_each_part():
    assert lineage.differences("tokenize", PARTS, PARTS) == []
    new = changed(params={"stemmer": "none", "stopwords": None}, inputs={"rows": "bbb"},
                  code={"tasks/text.py": "1", "tasks/engine/stage.py": "3", "tasks/data.py": "4"},
                  libs={"nltk": "3.10", "pyarrow": "21.0"})  # fmt: skip
    assert lineage.differences("tokenize", new, PARTS) == [
        "parameter tokenize.stemmer changed (snowball -> none)",
        "parameter tokenize.stopwords changed (english -> null)",
        "input rows changed",
        "code changed (tasks/data.py, tasks/engine/stage.py)",
        "library nltk changed (3.9 -> 3.10)",
    ]


def test_explain_picks_the_closest_earlier_run():
    def entry(parts, cached=False):
        return {"stage": "tokenize", "key": "k" * 20, "cached": cached, "parts": parts}

    far = changed(params={"stemmer": "none", "stopwords": None})
    near = changed(params={"stemmer": "none", "stopwords": "english"})
    earlier = [("run-far-1", [entry(far)]), ("run-near", [entry(near)]), ("run-far-2", [])]
    [line] = lineage.explain([entry(PARTS)], earlier)
    assert line == ("tokenize ran: parameter tokenize.stemmer changed (none -> snowball) "
                    "(vs run run-near)")  # fmt: skip
    assert lineage.explain([entry(PARTS)], []) == ["tokenize ran: first run of this stage"]
    assert lineage.explain([entry(PARTS, cached=True)], earlier)[0].startswith("tokenize cached")
    [same] = lineage.explain([entry(PARTS)], [("run-same", [entry(PARTS)])])
    assert "same key as run run-same" in same


def test_code_parts_follow_project_imports():
    import tasks.text

    parts = lineage.code_parts(tasks.text)
    # text.py imports tasks.engine.stage, which imports tasks.engine.settings and .lineage
    assert {
        "tasks/text.py",
        "tasks/engine/stage.py",
        "tasks/engine/settings.py",
        "tasks/engine/lineage.py",
    } <= set(parts)
    assert all(len(h) == 16 for h in parts.values())
    assert not any(p.startswith(("prefect", "nltk")) for p in parts)


def test_rollback_target_walks_back_one_step_per_rollback():
    def move(a, b, rollback=False):
        return {"from": a, "to": b, "rollback": rollback}

    assert tracking.rollback_target([]) is None
    assert tracking.rollback_target([move(None, 1)]) is None
    assert tracking.rollback_target([move(None, 1), move(1, 2), move(2, 3)]) == 2
    assert tracking.rollback_target([move(None, 1), move(1, 2), move(2, 3), move(3, 2, True)]) == 1
    assert tracking.rollback_target([move(None, 1), move(1, 2), move(2, 1, True)]) is None


QUICK = ["--profile", "quick", "--set", "data.limit_rows=800", "--set", "train.epochs=1",
         "--set", "train.max_steps_per_epoch=1"]  # fmt: skip


def test_edited_helper_makes_explain_say_code_changed(prefect_server, tmp_path):
    """On a copy of the code: run, edit a helper of the tokenize stage, run again."""
    copy = tmp_path / "code"
    for pkg in ("flows", "tasks", "models"):
        shutil.copytree(REPO / pkg, copy / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    api = get_current_settings().api.url  # the test session's Prefect server
    env = dict(os.environ, PYTHONPATH=str(copy), SEQFLOW_DATA_DIR=str(tmp_path / "data"),
               PREFECT_API_URL=api)  # fmt: skip
    env.pop("MLFLOW_TRACKING_URI", None)

    def seqflow(*args):
        out = subprocess.run([sys.executable, "-m", "flows.cli", *args], cwd=copy, env=env,
                             capture_output=True, text=True, timeout=300)  # fmt: skip
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        return out.stdout

    seqflow("run", "word2vec", *QUICK)
    text = copy / "tasks" / "text.py"
    source = text.read_text()
    helper = "def tokenize_shard("
    assert helper in source
    text.write_text(source.replace(helper, "# an edited helper\n" + helper))
    seqflow("run", "word2vec", *QUICK)
    lines = [line.strip() for line in seqflow("explain", "word2vec").splitlines()[1:]]
    assert lines[0].startswith("ingest cached")
    assert lines[1].startswith("tokenize ran: code changed (tasks/text.py)")
    # the edit changed no token: every later stage is served from cache
    assert [line.split()[1] for line in lines[2:5]] == ["cached"] * 3, lines
    assert lines[5].startswith("train ran: it always runs; nothing it depends on changed")

    training = copy / "tasks" / "train" / "word2vec.py"
    training.write_text(training.read_text() + "\n# an edited training module\n")
    seqflow("run", "word2vec", *QUICK)
    lines = [line.strip() for line in seqflow("explain", "word2vec").splitlines()[1:]]
    assert [line.split()[1] for line in lines[:5]] == ["cached"] * 5, lines
    assert lines[5].startswith("train ran: code changed (tasks/train/word2vec.py)"), lines


@task(cache_policy=NO_CACHE)
def log_one(run_id: str, i: int) -> None:
    tracking.log_metrics(run_id, {f"m{i:02d}": i}, step=i)
    tracking.set_tags(run_id, {f"t{i:02d}": i})


@flow
def many_threads(n: int) -> str:
    with tracking.pipeline_run("threads", "test", {"n": n}) as run_id:
        log_one.map(run_id, list(range(n))).result()  # raises if one failed
    return run_id


def test_tasks_on_worker_threads_log_into_one_run(prefect_server, data_dir):
    run_id = many_threads(24)
    uri = f"sqlite:///{data_dir / 'mlflow.db'}"
    c = MlflowClient(tracking_uri=uri)
    runs = c.search_runs([e.experiment_id for e in c.search_experiments()])
    assert [r.info.run_id for r in runs] == [run_id]  # no stray run anywhere
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert {k: v for k, v in run.data.metrics.items()} == {f"m{i:02d}": i for i in range(24)}
    assert {f"t{i:02d}" for i in range(24)} <= set(run.data.tags)
