"""Real servers on 127.0.0.1 for end-to-end tests: PostgreSQL, an MLflow server, a Prefect
server. Each runs in its own process group under a temp folder; `Stack.stop()` ends them all."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None, log: Path = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text()[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"{url}: the server exited with {proc.returncode}\n{tail}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


def pg_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    raise RuntimeError(f"{name} not found: install PostgreSQL (apt-get install postgresql)")


class Stack:
    def __init__(self, root: Path):
        self.root = root
        self.procs: list[subprocess.Popen] = []
        self.pg_dir: Path | None = None
        self.as_postgres: list[str] = []

    def _spawn(self, name: str, cmd: list[str], env: dict) -> tuple[subprocess.Popen, Path]:
        log = self.root / f"{name}.log"
        proc = subprocess.Popen(cmd, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=self.root)  # fmt: skip
        self.procs.append(proc)
        return proc, log

    def postgres(self) -> str:
        """A throwaway cluster (fsync off) on a free port; returns its SQLAlchemy URI."""
        port = free_port()
        self.pg_dir = Path(tempfile.mkdtemp(prefix="seqflow-pg-"))  # outside private tmp dirs
        if os.geteuid() == 0:  # initdb refuses root: run the cluster as user postgres
            shutil.chown(self.pg_dir, "postgres")
            self.as_postgres = ["runuser", "-u", "postgres", "--"]
        run = self.as_postgres
        subprocess.run([*run, pg_bin("initdb"), "-D", str(self.pg_dir / "data"), "-A", "trust",
                        "-U", "postgres"], check=True, capture_output=True)  # fmt: skip
        opts = f"-p {port} -k {self.pg_dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run([*run, pg_bin("pg_ctl"), "-D", str(self.pg_dir / "data"), "-o", opts,
                        "-l", str(self.pg_dir / "log"), "-w", "start"], check=True,
                       capture_output=True)  # fmt: skip
        subprocess.run([*run, pg_bin("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U",
                        "postgres", "mlflow"], check=True, capture_output=True)  # fmt: skip
        return f"postgresql://postgres@127.0.0.1:{port}/mlflow"

    def mlflow(self, backend: str) -> str:
        port = free_port()
        artifacts = self.root / "mlartifacts"
        cmd = [str(BIN / "mlflow"), "server", "--backend-store-uri", backend,
               "--artifacts-destination", artifacts.as_uri(), "--host", "127.0.0.1",
               "--port", str(port), "--workers", "1"]  # fmt: skip
        proc, log = self._spawn("mlflow", cmd, dict(os.environ))
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/health", 120, proc, log)
        return url

    def model_server(self, model_uri: str, tracking_uri: str) -> str:
        """`mlflow models serve` of a registered model (MLflow's scoring server)."""
        port = free_port()
        cmd = [str(BIN / "mlflow"), "models", "serve", "-m", model_uri, "--env-manager",
               "local", "-h", "127.0.0.1", "-p", str(port)]  # fmt: skip
        env = dict(
            os.environ,
            MLFLOW_TRACKING_URI=tracking_uri,
            PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        )  # its uvicorn
        proc, log = self._spawn("model-server", cmd, env)
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/ping", 180, proc, log)
        return url

    def prefect(self) -> str:
        port = free_port()
        # the UI asks /ui-settings for its API; that follows PREFECT_UI_API_URL, not --port
        env = dict(os.environ, PREFECT_HOME=str(self.root / "prefect"),
                   PREFECT_SERVER_ANALYTICS_ENABLED="false",
                   PREFECT_UI_API_URL=f"http://127.0.0.1:{port}/api")  # fmt: skip
        env.pop("PREFECT_API_URL", None)
        cmd = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
        proc, log = self._spawn("prefect", cmd, env)
        url = f"http://127.0.0.1:{port}/api"
        wait_http(f"{url}/health", 120, proc, log)
        return url

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        if self.pg_dir is not None and (self.pg_dir / "data" / "postmaster.pid").exists():
            subprocess.run([*self.as_postgres, pg_bin("pg_ctl"), "-D", str(self.pg_dir / "data"),
                            "-m", "immediate", "stop"], capture_output=True)  # fmt: skip
        if self.pg_dir is not None:
            shutil.rmtree(self.pg_dir, ignore_errors=True)


def get_json(url: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def post(url: str, body: bytes) -> tuple[int, dict]:
    """(status, JSON body) of a POST, error statuses included."""
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")
