"""One local dashboard: `seqflow server start|stop|status` keeps a Prefect server (flow runs,
task graphs, artifacts) and the MLflow UI (runs, metrics, models) running in the background,
with all their state under the data folder (data/server/), never ~/.prefect.

Every other seqflow command uses that Prefect server while it is up (`configure_prefect`, called
first thing in `seqflow`'s main()); otherwise Prefect's temporary server, with its home and
database under data/prefect/ and a startup timeout long enough for a busy machine.

Importing this module imports neither Prefect nor MLflow: main() must set Prefect's
environment before anything reads Prefect's settings.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path

from tasks.engine.settings import data_dir

HOST = "127.0.0.1"
PREFECT_PORT, MLFLOW_PORT = 4200, 5000
STARTUP_TIMEOUT_S = 180  # `server start` waits this long for both health checks
# Prefect's own default is 20 s: too short when training keeps both cores busy
EPHEMERAL_TIMEOUT = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
EPHEMERAL_TIMEOUT_S = "180"
EPHEMERAL_FAILED = "Timed out while attempting to connect to ephemeral Prefect API server"
SERVICES = ("prefect", "mlflow")


def server_dir() -> Path:
    return data_dir() / "server"


def state_file() -> Path:
    """The pid file: each service's pid, process start time, port, URL and log."""
    return server_dir() / "server.json"


# ---- processes -------------------------------------------------------------------------


def _proc_stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat fields after the command name (field 3 = state is index 0)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rfind(")") + 2 :].split()


def _started(pid: int) -> str | None:
    """The process's start time (clock ticks since boot): tells a pid from a reused one."""
    if (stat := _proc_stat(pid)) is not None:
        return stat[19]
    try:  # no /proc (not Linux): the pid alone
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return None
    return "?"


def _alive(pid: int, started: str | None = None) -> bool:
    stat = _proc_stat(pid)
    if stat is None:
        return _started(pid) is not None and started in (None, "?")
    return stat[0] not in ("Z", "X") and (started in (None, "?") or stat[19] == started)


def _group_alive(pgid: int) -> bool:
    """Any live (non-zombie) process in the group: the server's uvicorn children too."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
            return True
        except (ProcessLookupError, PermissionError):
            return False
    for entry in proc.iterdir():
        if entry.name.isdigit() and (stat := _proc_stat(int(entry.name))) is not None:
            if stat[2] == str(pgid) and stat[0] not in ("Z", "X"):
                return True
    return False


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((HOST, port))
            return True
        except OSError:
            return False


def healthy(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _health_url(name: str, url: str) -> str:
    return f"{url}/api/health" if name == "prefect" else f"{url}/health"


def read_state() -> dict:
    try:
        return json.loads(state_file().read_text())
    except (OSError, ValueError):
        return {}


def _write_state(state: dict) -> None:
    path = state_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.replace(path)


def _running(entry: dict | None) -> bool:
    return bool(entry) and _alive(entry["pid"], entry.get("started"))


# ---- what every seqflow command does first ----------------------------------------------


def running_api_url(timeout: float = 1.0) -> str | None:
    """The dashboard's Prefect API URL when its pid file names a live server that answers
    /api/health within `timeout` seconds, else None."""
    entry = read_state().get("prefect")
    if not _running(entry) or not healthy(_health_url("prefect", entry["url"]), timeout):
        return None
    return entry["url"] + "/api"


def configure_prefect(environ=os.environ) -> str | None:
    """Point Prefect at the dashboard server when it is up (unless PREFECT_API_URL is set);
    else prepare the temporary server: a startup timeout for a busy machine (unless set).
    Either way PREFECT_HOME (the temporary server's SQLite database, the client's files) goes
    under the data folder unless the user set it. Returns the dashboard's API URL when it is
    used. Call before anything imports Prefect: Prefect reads its settings once; after that
    (main() called in-process, as tests do) it changes nothing."""
    if environ is os.environ and "prefect" in sys.modules:
        return None
    if "PREFECT_HOME" not in environ:
        profiles = Path("~/.prefect/profiles.toml").expanduser()
        if profiles.is_file():  # the user's Prefect profiles stay in force
            environ.setdefault("PREFECT_PROFILES_PATH", str(profiles))
        environ["PREFECT_HOME"] = str(data_dir() / "prefect")
        try:  # Prefect makes no parents
            Path(environ["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)
        except OSError:  # a read-only or full data folder: `run` names it (flows/preflight.py)
            pass
    if _running(ui := read_state().get("mlflow")):  # run links point at the dashboard's UI
        environ.setdefault("SEQFLOW_MLFLOW_UI", ui["url"])
    if environ.get("PREFECT_API_URL"):
        return None
    if url := running_api_url():
        environ["PREFECT_API_URL"] = url
        return url
    environ.setdefault(EPHEMERAL_TIMEOUT, EPHEMERAL_TIMEOUT_S)
    return None


class EphemeralServerTimeout(RuntimeError):
    """Prefect's temporary server did not answer in time; the message names the fix."""


def ephemeral_failure(err: BaseException) -> str | None:
    """The one line for a temporary Prefect server that did not start in time, else None."""
    if isinstance(err, EphemeralServerTimeout):
        return f"seqflow: {err}"
    if not isinstance(err, RuntimeError) or EPHEMERAL_FAILED not in str(err):
        return None
    limit = os.environ.get(EPHEMERAL_TIMEOUT, "20")
    return (f"seqflow: the temporary Prefect server did not start within {limit} s (a busy "
            f"machine?): start the dashboard once with `seqflow server start` (later commands "
            f"use it), or raise {EPHEMERAL_TIMEOUT}")  # fmt: skip


def explain_ephemeral_failures() -> None:
    """Make a failed start of Prefect's temporary server raise one line naming the fix, not a
    message carrying the server's whole output (commands print `failed: <error>`).
    For commands that run flows on the temporary server; imports Prefect's server module."""
    from prefect.server.api.server import SubprocessASGIServer

    start = SubprocessASGIServer.start
    if getattr(start, "_seqflow", False):
        return

    def start_or_explain(self, *args, **kwargs):
        try:
            return start(self, *args, **kwargs)
        except RuntimeError as err:
            if line := ephemeral_failure(err):
                raise EphemeralServerTimeout(line.removeprefix("seqflow: ")) from None
            raise

    start_or_explain._seqflow = True
    SubprocessASGIServer.start = start_or_explain


FLOW_COMMANDS = ("run", "retrain")  # they catch a flow's errors and print `failed: <error>`
SERVER_COMMANDS = (*FLOW_COMMANDS, "ingest")  # they may start Prefect's temporary server


def run_command(args: argparse.Namespace) -> int:
    """`args.func(args)`, a temporary Prefect server that did not start ending in one line
    that names the fix (exit 1) instead of a traceback or the server's whole output; a
    temporary server that goes when the command does, even killed (flows/ephemeral.py)."""
    if args.command in FLOW_COMMANDS:  # before Prefect is imported: a refusal takes seconds
        from flows.preflight import refusal

        if (line := refusal(args.pipeline, args.profile, args.set or [])) is not None:
            print(f"seqflow: {line}", file=sys.stderr)
            return 2
    if args.command in SERVER_COMMANDS and not os.environ.get("PREFECT_API_URL"):
        from flows import ephemeral

        ephemeral.guard()
    if args.command in FLOW_COMMANDS:
        from tasks.engine import storage

        storage.quiet_tracebacks()  # a full disk: its one line, not Prefect's tracebacks
    if args.command in FLOW_COMMANDS and not os.environ.get("PREFECT_API_URL"):
        explain_ephemeral_failures()
    try:
        return args.func(args)
    except RuntimeError as err:
        if line := ephemeral_failure(err):
            print(line, file=sys.stderr)
            return 1
        raise


# ---- readable flow run names ------------------------------------------------------------


def _stamp() -> str:
    return datetime.now().strftime("%Y%m%d-%H%M%S")


def _field(value, name: str):
    return value.get(name) if isinstance(value, dict) else getattr(value, name, None)


class RunName:
    """`flow_run_name=` of a pipeline flow: `<pipeline>-<profile>-<YYYYmmdd-HHMMSS>`, the
    profile read as the flow's resolve() does (config's, else `profile`, else `default`)."""

    def __init__(self, pipeline: str, default: str = "parity"):
        self.pipeline, self.default = pipeline, default

    def __call__(self) -> str:
        from prefect.runtime import flow_run

        params = flow_run.parameters or {}
        profile = _field(params.get("config"), "profile") or params.get("profile")
        return f"{self.pipeline}-{profile or self.default}-{_stamp()}"


def retrain_run_name() -> str:
    """`flow_run_name=` of the retrain flow: `retrain-<pipeline>-<YYYYmmdd-HHMMSS>`."""
    from prefect.runtime import flow_run

    params = flow_run.parameters or {}
    return f"retrain-{params.get('pipeline') or 'word2vec'}-{_stamp()}"


def tune_run_name() -> str:
    """`flow_run_name=` of the tune flow: `tune-<pipeline>-<profile>-<YYYYmmdd-HHMMSS>`."""
    from prefect.runtime import flow_run

    params = flow_run.parameters or {}
    return f"tune-{params.get('pipeline')}-{params.get('profile') or 'quick'}-{_stamp()}"


# ---- seqflow server start | stop | status --------------------------------------------------


def _bin(name: str) -> str:
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else (shutil.which(name) or name)


def _spawn(name: str, cmd: list[str], env: dict) -> dict:
    folder = server_dir()
    log = folder / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=folder,
                                start_new_session=True)  # fmt: skip
    return {"pid": proc.pid, "started": _started(proc.pid), "log": str(log), "proc": proc}


def _prefect_cmd(port: int) -> tuple[list[str], dict]:
    home = server_dir() / "prefect"
    home.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_API_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{home / 'prefect.db'}",
               PREFECT_UI_API_URL=f"http://{HOST}:{port}/api")  # fmt: skip
    for inherited in ("PREFECT_API_URL", "PREFECT_PROFILES_PATH", "PREFECT_PROFILE"):
        env.pop(inherited, None)
    cmd = [_bin("prefect"), "server", "start", "--host", HOST, "--port", str(port)]
    return cmd, env


def _mlflow_cmd(port: int, uri: str) -> tuple[list[str], dict]:
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
           "--host", HOST, "--port", str(port), "--workers", "1"]  # fmt: skip
    return cmd, dict(os.environ)


def _tail(path: str, n: int = 2000) -> str:
    try:
        return Path(path).read_text(errors="replace")[-n:]
    except OSError:
        return ""


def _stop_entry(entry: dict, grace: float = 20.0) -> None:
    pid = entry["pid"]
    if not _alive(pid, entry.get("started")):
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)  # started with its own session: pgid == pid
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if not _group_alive(pid):
                return
            time.sleep(0.2)


def start(prefect_port: int = PREFECT_PORT, mlflow_port: int = MLFLOW_PORT,
          timeout: float = STARTUP_TIMEOUT_S) -> int:  # fmt: skip
    from tasks.engine import tracking

    state = read_state()
    uri = tracking.tracking_uri()
    wanted = {"prefect": prefect_port, "mlflow": mlflow_port}
    remote_mlflow = uri.startswith(("http://", "https://"))
    if remote_mlflow:  # MLFLOW_TRACKING_URI names a tracking server: its UI is the dashboard
        wanted.pop("mlflow")
    new: dict[str, dict] = {}
    for name, port in wanted.items():
        entry = state.get(name)
        if _running(entry):
            print(f"{name}: already running on {entry['url']} (pid {entry['pid']})")
            continue
        if not _port_free(port):
            flag = f"--{name}-port"
            print(f"seqflow: port {port} on {HOST} is in use (another {name} server?): stop "
                  f"it or pass {flag} N", file=sys.stderr)  # fmt: skip
            for started in new.values():
                _stop_entry(started)
            return 1
        server_dir().mkdir(parents=True, exist_ok=True)
        if name == "prefect":
            cmd, env = _prefect_cmd(port)
        else:
            if uri.startswith("sqlite:"):
                tracking.client()  # creates the store's tables under its file lock
            cmd, env = _mlflow_cmd(port, uri)
        new[name] = _spawn(name, cmd, env) | {"port": port, "url": f"http://{HOST}:{port}"}
    deadline = time.monotonic() + timeout
    pending = dict(new)
    while pending:
        for name, entry in list(pending.items()):
            if entry["proc"].poll() is not None:
                code, log = entry["proc"].returncode, entry["log"]
                print(f"seqflow: the {name} server exited with {code}; its log ({log}) ends:\n"
                      f"{_tail(log)}", file=sys.stderr)  # fmt: skip
                for other in new.values():
                    _stop_entry(other)
                return 1
            if healthy(_health_url(name, entry["url"])):
                del pending[name]
        if pending and time.monotonic() > deadline:
            names = ", ".join(pending)
            print(f"seqflow: {names} did not answer its health check within {timeout:.0f} s; "
                  f"logs in {server_dir()}; raise --timeout on a busy machine",
                  file=sys.stderr)  # fmt: skip
            for other in new.values():
                _stop_entry(other)
            return 1
        if pending:
            time.sleep(0.5)
    for name, entry in new.items():
        entry.pop("proc")
        state[name] = entry
    if new:
        state["tracking_uri"] = tracking.redact(uri)
        _write_state(state)
    print(f"Prefect UI: {state['prefect']['url']}  (flow runs: {state['prefect']['url']}/runs)")
    if remote_mlflow:
        print(f"MLflow UI:  {tracking.redact(uri)}  (MLFLOW_TRACKING_URI)")
    else:
        print(f"MLflow UI:  {state['mlflow']['url']}  (store {state['tracking_uri']})")
    print(f"state and logs in {server_dir()}; seqflow commands use this Prefect server while it "
          "is up; `seqflow server stop` ends both")  # fmt: skip
    return 0


def status(prefect_port: int = PREFECT_PORT, mlflow_port: int = MLFLOW_PORT) -> int:
    """Each service's URL and up/down; exit 0 when both are up, else 3."""
    state = read_state()
    ports = {"prefect": prefect_port, "mlflow": mlflow_port}
    up = True
    for name in SERVICES:
        entry = state.get(name)
        url = entry["url"] if entry else f"http://{HOST}:{ports[name]}"
        if _running(entry) and healthy(_health_url(name, url)):
            print(f"{name:<8} {url:<24} up (pid {entry['pid']})")
        elif _running(entry):
            print(f"{name:<8} {url:<24} starting or not answering (pid {entry['pid']}; log "
                  f"{entry['log']})")  # fmt: skip
            up = False
        else:
            print(f"{name:<8} {url:<24} down")
            up = False
    return 0 if up else 3


def stop() -> int:
    state = read_state()
    live = {n: state[n] for n in SERVICES if _running(state.get(n))}
    for name, entry in live.items():
        _stop_entry(entry)
        print(f"{name}: stopped (pid {entry['pid']})")
    if not live:
        print("the dashboard is not running")
    state_file().unlink(missing_ok=True)
    return 0


def cmd_server(args: argparse.Namespace) -> int:
    if args.action == "start":
        return start(args.prefect_port, args.mlflow_port, args.timeout)
    if args.action == "status":
        return status(args.prefect_port, args.mlflow_port)
    return stop()


def add_parser(sub) -> None:
    """`seqflow server start|stop|status` on the CLI's subparsers."""
    p = sub.add_parser(
        "server",
        help="the local dashboard: Prefect server + MLflow UI in the background",
        description="start|stop|status of a background Prefect server and MLflow UI on "
        f"{HOST}; state, database and logs under the data folder (server/). While it is up, "
        "seqflow commands report their flow runs to it.",
    )
    p.add_argument("action", choices=("start", "stop", "status"),
                   help="status exits 0 when both are up, 3 otherwise")  # fmt: skip
    p.add_argument("--prefect-port", type=int, default=PREFECT_PORT, metavar="N",
                   help="Prefect server and UI (default: %(default)s)")  # fmt: skip
    p.add_argument("--mlflow-port", type=int, default=MLFLOW_PORT, metavar="N",
                   help="MLflow UI (default: %(default)s)")  # fmt: skip
    p.add_argument("--timeout", type=float, default=STARTUP_TIMEOUT_S, metavar="S",
                   help="start: seconds to wait for the health checks (%(default)s)")  # fmt: skip
    p.set_defaults(func=cmd_server)
