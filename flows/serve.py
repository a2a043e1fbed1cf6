"""`seqflow serve PIPELINE`: the champion (or a version) behind MLflow's scoring server.

It runs `mlflow models serve -m models:/<name>@champion --env-manager local` on seqflow's
tracking store, with this environment's bin folder first on PATH: MLflow starts the server as
`uvicorn` by name (mlflow/pyfunc/scoring_server `get_cmd`), which a venv that is not activated
does not put on PATH (`exec: uvicorn: not found`, exit 127). The server replaces this process,
so Ctrl-C or SIGTERM stops it directly.
"""

import os
import socket
import sys
from pathlib import Path

BIN = Path(sys.executable).parent  # this environment's scripts: mlflow, uvicorn


class ServeError(ValueError):
    """What stops serving before it starts; the message names the fix."""


def model_uri(pipeline: str, version: int | None) -> tuple[str, str]:
    """(models:/ URI, what it is in words), checked against the tracking store."""
    import mlflow

    from tasks.engine import tracking

    if pipeline == "fundamentals":
        raise ServeError("fundamentals registers no model: serve word2vec, seq2seq, charlm "
                         "or airline")  # fmt: skip
    if version is None:
        champ = tracking.champion(pipeline)
        if champ is None:
            store = tracking.redact(tracking.tracking_uri())
            raise ServeError(f"{pipeline} has no champion in {store}: run `seqflow run "
                             f"{pipeline}` first, or give --version N")  # fmt: skip
        return f"models:/{pipeline}@champion", f"{pipeline} version {champ.version} (champion)"
    try:
        tracking.client().get_model_version(pipeline, str(version))
    except mlflow.exceptions.MlflowException:
        raise ServeError(
            f"{pipeline} has no version {version}: `seqflow history {pipeline}` "
            "lists its champions, `seqflow ui` every version"
        ) from None
    return f"models:/{pipeline}/{version}", f"{pipeline} version {version}"


def check_port(host: str, port: int) -> None:
    """Refuse a port that is taken (or a host that is not this machine's) before starting."""
    if not 1 <= port <= 65535:
        raise ServeError(f"--port {port}: give a port from 1 to 65535")
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        try:
            s.bind((host, port))
        except OSError as err:
            raise ServeError(f"cannot listen on {host}:{port} ({err.strerror}): give another "
                             "--port, or stop what holds it") from None  # fmt: skip


def command(uri: str, host: str, port: int) -> tuple[list[str], dict]:
    """(argv, environment) of MLflow's scoring server for model `uri`."""
    from tasks.engine import tracking

    argv = [str(BIN / "mlflow"), "models", "serve", "-m", uri, "--env-manager", "local",
            "-h", host, "-p", str(port)]  # fmt: skip
    path = os.environ.get("PATH", "")
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{path}" if path else str(BIN),
               MLFLOW_TRACKING_URI=tracking.tracking_uri())  # fmt: skip
    return argv, env


def serve(pipeline: str, version: int | None, host: str, port: int) -> None:
    """Check, say what is served where, then become the scoring server (returns only on error)."""
    uri, what = model_uri(pipeline, version)
    check_port(host, port)
    argv, env = command(uri, host, port)
    print(f"serving {what} on http://{host}:{port}/invocations (MLflow's scoring server; "
          "Ctrl-C stops it)", flush=True)  # fmt: skip
    sys.stderr.flush()
    os.execve(argv[0], argv, env)
