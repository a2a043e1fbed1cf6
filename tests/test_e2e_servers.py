"""End to end on real servers (127.0.0.1 only): PostgreSQL behind an MLflow server, a Prefect
server and a process worker. Deploys prefect.yaml, runs word2vec and its retrain through
deployments, and checks the outcome through the servers' REST APIs and their web UIs."""

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.conftest import REPO
from tests.servers import Stack, get_json
from tests.test_retrain import drop_tweets

BIN = Path(sys.executable).parent
SHOTS = REPO / "test-output" / "screenshots"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    root = tmp_path_factory.mktemp("stack")
    servers = Stack(root)
    try:
        backend = servers.postgres()
        mlflow_url = servers.mlflow(backend)
        prefect_url = servers.prefect()
        env = dict(
            os.environ,
            PREFECT_API_URL=prefect_url,
            MLFLOW_TRACKING_URI=mlflow_url,
            SEQFLOW_DATA_DIR=str(root / "data"),
            SEQFLOW_HOME=str(REPO),
            PREFECT_WORKER_QUERY_SECONDS="2",
            PREFECT_HOME=str(root / "client"),
        )
        yield SimpleNamespace(root=root, mlflow=mlflow_url, prefect=prefect_url, env=env)
    finally:
        servers.stop()


def sh(env, *args, timeout=300) -> str:
    out = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{' '.join(args)}: exit {out.returncode}\n{out.stdout}{out.stderr}"
    return out.stdout + out.stderr


def run_deployment(s, name: str) -> dict:
    """`prefect deployment run`, then a process worker that exits when the run is done."""
    out = sh(s.env, str(BIN / "prefect"), "deployment", "run", name)
    flow_run_id = re.search(r"UUID:\s*([0-9a-f-]{36})", out).group(1)
    log = sh(s.env, str(BIN / "prefect"), "worker", "start", "--pool", "seqflow", "--type",
             "process", "--run-once", timeout=600)  # fmt: skip
    run = get_json(f"{s.prefect}/flow_runs/{flow_run_id}")
    run["worker_log"] = log[-6000:]
    return run


def markdown_of(s, flow_run_id: str) -> str:
    found = get_json(f"{s.prefect}/artifacts/filter",
                     {"artifacts": {"flow_run_id": {"any_": [flow_run_id]}}})  # fmt: skip
    return "\n".join(a["data"] for a in found if a["type"] == "markdown")


def mlflow_runs(s) -> list[dict]:
    exp = get_json(f"{s.mlflow}/api/2.0/mlflow/experiments/get-by-name?experiment_name=word2vec")
    body = {"experiment_ids": [exp["experiment"]["experiment_id"]], "max_results": 100}
    return get_json(f"{s.mlflow}/api/2.0/mlflow/runs/search", body).get("runs", [])


def champion_version(s) -> int:
    url = f"{s.mlflow}/api/2.0/mlflow/registered-models/alias?name=word2vec&alias=champion"
    return int(get_json(url)["model_version"]["version"])


def tags(run: dict) -> dict:
    return {t["key"]: t["value"] for t in run["data"].get("tags", [])}


def metrics(run: dict) -> dict:
    """Metric values and counts (tags `count.<name>`) of a run as the REST API returns it."""
    out = {m["key"]: m["value"] for m in run["data"].get("metrics", [])}
    counted = {t["key"][6:]: float(t["value"]) for t in run["data"].get("tags", [])
               if t["key"].startswith("count.")}  # fmt: skip
    return out | counted


def test_deploy_run_retrain_on_real_servers(stack):
    s = stack
    sh(s.env, str(BIN / "seqflow"), "deploy")
    deployments = {d["name"]: d for d in get_json(f"{s.prefect}/deployments/filter", {})}
    assert {"word2vec-quick", "word2vec-parity", "word2vec-retrain"} <= set(deployments)
    active = {n: [x["active"] for x in d["schedules"]] for n, d in deployments.items()}
    assert active["word2vec-retrain"] == [True] and active["word2vec-parity"] == [False]

    first = run_deployment(s, "word2vec/word2vec-quick")
    assert first["state_type"] == "COMPLETED", first["worker_log"]
    runs = mlflow_runs(s)
    assert len(runs) == 1 and runs[0]["info"]["status"] == "FINISHED"
    m = metrics(runs[0])
    assert m["train_rows"] == 3000 and m["downstream_f1"] > 0 and m["vocab_size"] > 100
    assert tags(runs[0])["prefect_flow_run_id"] == first["id"]
    assert champion_version(s) == 1
    record = markdown_of(s, first["id"])
    assert "Stages (0 of 5 from cache)" in record and runs[0]["info"]["run_id"] in record
    assert "## Stage keys" in record and "tasks/text.py `" in record  # the keys' parts

    idle = run_deployment(s, "retrain/word2vec-retrain")
    assert idle["state_type"] == "COMPLETED", idle["worker_log"]
    assert "retrain: no new data" in markdown_of(s, idle["id"])
    assert len(mlflow_runs(s)) == 1  # no training

    drop_tweets(Path(s.env["SEQFLOW_DATA_DIR"]), "batch-001.csv", 3001, 6001)
    retrained = run_deployment(s, "retrain/word2vec-retrain")
    assert retrained["state_type"] == "COMPLETED", retrained["worker_log"]
    runs = mlflow_runs(s)
    assert len(runs) == 2 and all(r["info"]["status"] == "FINISHED" for r in runs)
    challenger = next(r for r in runs if "retrain.decision" in tags(r))
    t, m = tags(challenger), metrics(challenger)
    # rows repeating a tweet of the first 3,000 (same label and text) are dropped, counted
    assert 0 < m["duplicate_rows"] < 600 and m["train_rows"] == 6000 - m["duplicate_rows"]
    assert t["retrain.challenger_version"] == "2"
    better = m["retrain.challenger_score"] > m["retrain.champion_score"]
    assert t["retrain.decision"] == ("promoted" if better else "kept champion")
    assert champion_version(s) == (2 if better else 1)
    assert t["retrain.data_fingerprint"] != t["retrain.champion_data_fingerprint"]
    assert "retrain: " + t["retrain.decision"] in markdown_of(s, retrained["id"])

    screenshots(s, [r["info"]["run_id"] for r in runs], challenger, retrained["id"])
    event_triggered_retrain(s, deployments["word2vec-retrain"]["id"])


def event_triggered_retrain(s, deployment_id: str) -> None:
    """`seqflow ingest` copies a new CSV and emits seqflow.data.arrived; the retrain
    deployment's trigger (prefect.yaml) creates a flow run with the event's note."""
    before = {r["id"] for r in flow_runs_of(s, deployment_id)}
    new_csv = drop_tweets(s.root / "outside", "batch-002.csv", 6001, 9001, new=True)
    out = sh(s.env, str(BIN / "seqflow"), "ingest", "word2vec", str(new_csv))
    assert "batch-002.csv" in out and "event seqflow.data.arrived" in out, out
    assert (Path(s.env["SEQFLOW_DATA_DIR"]) / "incoming" / "word2vec" / "batch-002.csv").is_file()
    deadline = time.monotonic() + 90
    while not (new := [r for r in flow_runs_of(s, deployment_id) if r["id"] not in before]):
        assert time.monotonic() < deadline, "the arrival event created no retrain run in 90 s"
        time.sleep(2)
    [triggered] = new
    assert "1 new file(s): batch-002.csv" in triggered["parameters"]["trigger"]
    log = sh(s.env, str(BIN / "prefect"), "worker", "start", "--pool", "seqflow", "--type",
             "process", "--run-once", timeout=600)  # fmt: skip
    run = get_json(f"{s.prefect}/flow_runs/{triggered['id']}")
    assert run["state_type"] == "COMPLETED", log[-6000:]
    record = markdown_of(s, triggered["id"])
    assert "batch-002.csv" in record and "retrain: " in record
    runs = mlflow_runs(s)
    last = max(runs, key=lambda r: metrics(r)["train_rows"])
    assert len(runs) == 3 and metrics(last)["train_rows"] == 9000 - metrics(last)["duplicate_rows"]


def flow_runs_of(s, deployment_id: str) -> list[dict]:
    body = {"flow_runs": {"deployment_id": {"any_": [deployment_id]}}}
    return get_json(f"{s.prefect}/flow_runs/filter", body)


def chromium(*args: str, timeout: int = 90) -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    assert exe, "headless Chromium is needed: apt-get install chromium (.ci/run installs it)"
    profile = SHOTS.parent / "chromium-profile"
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
           f"--user-data-dir={profile}", "--virtual-time-budget=20000",
           "--window-size=1600,1000", *args]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    return out.stdout


def screenshots(s, run_ids: list[str], challenger: dict, flow_run_id: str) -> None:
    """The MLflow UI comparing the two runs and the Prefect UI showing the retrain flow run."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    exp_id = challenger["info"]["experiment_id"]
    runs = ",".join(f'"{r}"' for r in run_ids)
    compare = f'{s.mlflow}/#/compare-runs?runs=[{runs}]&experiments=["{exp_id}"]'
    flow_page = s.prefect.removesuffix("/api") + f"/runs/flow-run/{flow_run_id}"
    for name, url in (("mlflow-compare.png", compare), ("prefect-flow-run.png", flow_page)):
        chromium(f"--screenshot={SHOTS / name}", url)
        assert (SHOTS / name).stat().st_size > 10_000, f"{name}: empty screenshot"

    dom = chromium("--dump-dom", compare)
    for run_id in run_ids:  # the comparison table names both runs
        assert run_id in dom or challenger["info"]["run_name"] in dom, dom[-2000:]
    assert "downstream_f1" in dom
    dom = chromium("--dump-dom", flow_page)
    flow_run = get_json(f"{s.prefect}/flow_runs/{flow_run_id}")
    assert flow_run["name"] in dom and "Completed" in dom, dom[-2000:]
