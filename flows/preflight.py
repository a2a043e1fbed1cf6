"""What `seqflow run` and `retrain` check of the machine before any stage: a data folder that
takes a write, the training device the config names, a tracking store that answers. Each
fault is one line naming it and the fix (exit 2); nothing is written, no run is opened.

Imports neither Prefect nor MLflow (torch only for a device other than auto/cpu)."""

import socket
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

from tasks.engine import storage
from tasks.engine.settings import data_dir, redact, tracking_uri

TIMEOUT_S = 5.0  # one try: MLflow's own retries are for blips during a run
PORTS = {"postgresql": 5432, "mysql": 3306, "mssql": 1433}


class Refused(Exception):
    """The machine cannot run this command as configured; str() is the line to print."""


def refusal(pipeline: str, profile: str, sets: list[str]) -> str | None:
    """The line refusing `seqflow run|retrain PIPELINE --profile P --set ...` on this machine,
    or None. A config that does not load is the command's to report, with its own message."""
    from flows.config import ConfigError, load_config

    try:
        config = load_config(pipeline, profile, sets)
    except (ConfigError, FileNotFoundError, ValueError):
        config = None
    try:
        check(config)
    except Refused as err:
        return str(err)
    return None


def check(config) -> None:
    """Raise Refused for the first fault found, in the order data folder, device, store."""
    try:
        storage.probe(data_dir())
    except storage.StorageError as err:
        raise Refused(str(err)) from None
    device(getattr(getattr(config, "train", None), "device", "auto"))
    tracking_store()


def device(name: str) -> None:
    """A device named in train.device that this machine lacks."""
    if name in ("auto", "cpu"):
        return
    import torch

    if name == "cuda" and not torch.cuda.is_available():
        why = f"torch {torch.__version__} finds no CUDA device on this machine"
    elif name == "mps" and not torch.backends.mps.is_available():
        why = f"torch {torch.__version__} finds no Apple MPS device on this machine"
    else:
        return
    raise Refused(f"train.device={name}: {why}; use --set train.device=auto (the best device "
                  f"found) or --set train.device=cpu")  # fmt: skip


def tracking_store() -> None:
    """The tracking URI, tried once with a short timeout: an HTTP server must answer, a SQLite
    file's folder must take a write, a database server must accept a connection."""
    uri = tracking_uri()
    shown, parts = redact(uri), urlparse(uri)
    fix = "start it or unset MLFLOW_TRACKING_URI"
    if parts.scheme in ("http", "https"):
        url = uri.rstrip("/") + "/health"
        try:
            urllib.request.urlopen(url, timeout=TIMEOUT_S).close()
        except urllib.error.HTTPError:  # it answered, if not on /health (a proxy, another path)
            return
        except (OSError, ValueError) as err:
            raise Refused(f"MLflow tracking server at {shown} does not answer ({_reason(err)}): "
                          f"{fix}") from None  # fmt: skip
    elif parts.scheme == "sqlite":
        folder = Path(uri.removeprefix("sqlite:///")).parent
        try:
            storage.probe(folder)
        except storage.StorageError as err:
            raise Refused(f"MLflow store {shown}: {err}") from None
    elif (scheme := parts.scheme.split("+")[0]) in PORTS and parts.hostname:
        try:
            socket.create_connection((parts.hostname, parts.port or PORTS[scheme]),
                                     timeout=TIMEOUT_S).close()  # fmt: skip
        except OSError as err:
            raise Refused(f"MLflow tracking database at {shown} does not answer "
                          f"({_reason(err)}): {fix}") from None  # fmt: skip


def _reason(err: BaseException) -> str:
    err = getattr(err, "reason", err)  # URLError wraps the socket's error
    if isinstance(err, TimeoutError | socket.timeout):
        return f"no answer within {TIMEOUT_S:.0f} s"
    return getattr(err, "strerror", None) or str(err) or type(err).__name__
