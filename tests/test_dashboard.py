"""The local dashboard (`seqflow server start|stop|status`, flows/dashboard.py) with real
processes: a Prefect server and the MLflow UI in the background, seqflow commands reporting to
that server with readable flow run names, and the temporary server on a busy machine."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flows import dashboard
from tests.servers import free_port, get_json
from tests.test_e2e_servers import SHOTS, chromium

BIN = Path(sys.executable).parent
SEQFLOW = str(BIN / "seqflow")
# settings a test's environment must not carry into the commands under test
CLEARED = ("PREFECT_API_URL", "PREFECT_HOME", "PREFECT_PROFILES_PATH", "MLFLOW_TRACKING_URI",
           dashboard.EPHEMERAL_TIMEOUT)  # fmt: skip
AIRLINE_QUICK = ["run", "airline", "--profile", "quick"]


def env_for(data: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    env |= {"SEQFLOW_DATA_DIR": str(data), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    return env | extra


def seqflow(env: dict, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([SEQFLOW, *args], env=env, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


def ok(out: subprocess.CompletedProcess) -> str:
    assert out.returncode == 0, f"exit {out.returncode}\n{out.stdout}\n{out.stderr[-6000:]}"
    return out.stdout + out.stderr


def http_ok(url: str) -> bool:
    return dashboard.healthy(url, timeout=10)


def test_configure_prefect_respects_the_users_settings(tmp_path):
    """No dashboard: temporary server under the data folder with a long startup timeout;
    whatever the user set wins."""
    env = {"SEQFLOW_DATA_DIR": str(tmp_path)}
    old = os.environ.get("SEQFLOW_DATA_DIR")
    os.environ["SEQFLOW_DATA_DIR"] = str(tmp_path)  # data_dir() reads the process's environment
    try:
        assert dashboard.configure_prefect(env) is None
        assert env["PREFECT_HOME"] == str(tmp_path / "prefect") and (tmp_path / "prefect").is_dir()
        assert env[dashboard.EPHEMERAL_TIMEOUT] == dashboard.EPHEMERAL_TIMEOUT_S
        assert "PREFECT_API_URL" not in env
        mine = {"PREFECT_HOME": "/elsewhere", dashboard.EPHEMERAL_TIMEOUT: "7",
                "PREFECT_API_URL": "http://prefect:4200/api"}  # fmt: skip
        env = dict(mine)
        assert dashboard.configure_prefect(env) is None and env == mine
    finally:
        if old is None:
            os.environ.pop("SEQFLOW_DATA_DIR", None)
        else:
            os.environ["SEQFLOW_DATA_DIR"] = old


def flow_runs(api: str) -> list[dict]:
    return get_json(f"{api}/flow_runs/filter", {"sort": "START_TIME_ASC"})


def test_server_start_runs_use_it_ui_and_stop(tmp_path):
    data = tmp_path / "data"
    pp, mp = free_port(), free_port()
    ports = ["--prefect-port", str(pp), "--mlflow-port", str(mp)]
    env = env_for(data)
    prefect, mlflow = f"http://127.0.0.1:{pp}", f"http://127.0.0.1:{mp}"
    try:
        started = time.monotonic()
        out = ok(seqflow(env, "server", "start", *ports, timeout=300))
        print(f"server start: {time.monotonic() - started:.1f} s")
        assert prefect in out and mlflow in out, out
        assert http_ok(f"{prefect}/api/health") and http_ok(f"{mlflow}/health")
        assert http_ok(prefect) and http_ok(mlflow)  # both UIs: HTTP 200
        state = data / "server"
        assert (state / "server.json").is_file() and (state / "prefect" / "prefect.db").is_file()
        status = seqflow(env, "server", "status")
        assert status.returncode == 0 and re.search(rf"prefect\s+{prefect}\s+up", status.stdout)
        assert re.search(rf"mlflow\s+{mlflow}\s+up", status.stdout), status.stdout
        again = ok(seqflow(env, "server", "start", *ports))
        assert "already running" in again, again

        for _ in range(2):  # no PREFECT_API_URL in their environment: they find the dashboard
            run = seqflow(env, *AIRLINE_QUICK, "--set", "train.epochs=2")
            ok(run)
            assert "Starting temporary server" not in run.stderr, run.stderr[-3000:]
        api = f"{prefect}/api"
        runs = [r for r in flow_runs(api) if r["name"].startswith("airline-")]
        assert len(runs) == 2, [r["name"] for r in runs]
        for r in runs:
            assert re.fullmatch(r"airline-quick-\d{8}-\d{6}", r["name"]), r["name"]
            assert r["state_type"] == "COMPLETED", (r["name"], r["state_type"])
        # retrain: no new data since the champion, so only the decision; named after its pipeline
        ok(seqflow(env, "retrain", "airline", "--set", "train.epochs=2"))
        retrains = [r for r in flow_runs(api) if r["name"].startswith("retrain-")]
        assert len(retrains) == 1 and re.fullmatch(r"retrain-airline-\d{8}-\d{6}",
                                                   retrains[0]["name"]), retrains  # fmt: skip
        assert retrains[0]["state_type"] == "COMPLETED"

        ui_pages(prefect, mlflow, runs)
    finally:
        stopped = seqflow(env, "server", "stop", timeout=120)
    assert stopped.returncode == 0, stopped.stderr
    assert "prefect: stopped" in stopped.stdout and "mlflow: stopped" in stopped.stdout
    assert not (data / "server" / "server.json").exists()
    status = seqflow(env, "server", "status", *ports)
    assert status.returncode == 3, status.stdout
    assert re.search(r"prefect\s+\S+\s+down", status.stdout), status.stdout
    assert re.search(r"mlflow\s+\S+\s+down", status.stdout), status.stdout
    assert not http_ok(f"{prefect}/api/health") and not http_ok(f"{mlflow}/health")


def ui_pages(prefect: str, mlflow: str, runs: list[dict]) -> None:
    """The Prefect UI lists the readable flow run names; screenshots of its runs page, of a
    flow run (its task graph) and of the MLflow runs page."""
    names = {r["name"] for r in runs}
    for _ in range(3):  # a cold browser profile can dump the page before the list arrives
        dom = chromium("--dump-dom", f"{prefect}/runs")
        if names <= set(re.findall(r"airline-quick-\d{8}-\d{6}", dom)):
            break
    assert names <= set(re.findall(r"airline-quick-\d{8}-\d{6}", dom)), dom[-2000:]
    SHOTS.mkdir(parents=True, exist_ok=True)
    exp = get_json(f"{mlflow}/api/2.0/mlflow/experiments/get-by-name?experiment_name=airline")
    exp_id = exp["experiment"]["experiment_id"]
    pages = {
        "dashboard-prefect-runs.png": f"{prefect}/runs",
        "dashboard-prefect-flow-run.png": f"{prefect}/runs/flow-run/{runs[-1]['id']}",
        "dashboard-mlflow-runs.png": f"{mlflow}/#/experiments/{exp_id}/runs",
    }
    for name, url in pages.items():
        (SHOTS / name).unlink(missing_ok=True)
        chromium(f"--screenshot={SHOTS / name}", url)
        png = (SHOTS / name).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000, f"{name}: {len(png)} bytes"


def burners(n: int = 2) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)
            for _ in range(n)]  # fmt: skip


def server_wait(log: str) -> float:
    """Seconds from Prefect's `Starting temporary server` to the first flow run log line."""
    stamps = [re.match(r"(\d\d):(\d\d):(\d\d\.\d+) \|", line) for line in log.splitlines()
              if "Starting temporary server" in line or "Beginning flow run" in line]  # fmt: skip
    secs = [int(h) * 3600 + int(m) * 60 + float(x) for h, m, x in (s.groups() for s in stamps if s)]
    return secs[-1] - secs[0] if len(secs) >= 2 else float("nan")


def test_temporary_server_starts_on_a_busy_machine(tmp_path):
    """Both cores kept busy: the temporary Prefect server (no dashboard, no PREFECT_API_URL)
    still starts within the longer timeout and the run completes."""
    env = env_for(tmp_path / "data")
    busy = burners()
    try:
        time.sleep(1)
        started = time.monotonic()
        run = seqflow(env, *AIRLINE_QUICK, timeout=1500)
        took = time.monotonic() - started
    finally:
        for p in busy:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=10)
    print(f"airline quick on the temporary server, both cores busy: {took:.1f} s (server up "
          f"after {server_wait(run.stderr):.1f} s)")  # fmt: skip
    ok(run)
    assert "Timed out while attempting to connect" not in run.stderr
    assert "Starting temporary server" in run.stderr  # it did use the temporary server
    assert (tmp_path / "data" / "prefect" / "prefect.db").is_file()  # under data/, not ~/.prefect


def test_temporary_server_timeout_is_one_line_naming_the_fix(tmp_path):
    env = env_for(tmp_path / "data", **{dashboard.EPHEMERAL_TIMEOUT: "1"})
    run = seqflow(env, *AIRLINE_QUICK, "--set", "train.epochs=2", timeout=300)
    assert run.returncode == 1, run.stderr[-3000:]
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    [line] = [x for x in run.stderr.splitlines() if "temporary Prefect server did not start" in x]
    assert "seqflow server start" in line and dashboard.EPHEMERAL_TIMEOUT in line, line


@pytest.fixture(autouse=True)
def _no_stray_servers(tmp_path):
    """Whatever a test left running under its data folder is ended."""
    yield
    state = tmp_path / "data" / "server" / "server.json"
    if state.exists():
        subprocess.run([SEQFLOW, "server", "stop"], env=env_for(tmp_path / "data"),
                       capture_output=True, timeout=120)  # fmt: skip
