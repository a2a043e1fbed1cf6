"""Where seqflow keeps its files and where it finds a dataset mirror (environment-driven)."""

import os
import re
from pathlib import Path


def data_dir() -> Path:
    """Root for the download cache, stage outputs and the default MLflow store."""
    return Path(os.environ.get("SEQFLOW_DATA_DIR", "data")).resolve()


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI if set, else an embedded SQLite store in the data folder."""
    if uri := os.environ.get("MLFLOW_TRACKING_URI"):
        return uri
    data_dir().mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{data_dir() / 'mlflow.db'}"


# scheme://user:password@host -> scheme://***@host (also a lone user or token before the @)
_USERINFO = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]*://)[^/\s@]+@")


def redact(value: str) -> str:
    """The text with the credentials of every URI in it replaced by ***: params, tags and
    failure reasons are readable by anyone with access to the tracking store."""
    return _USERINFO.sub(r"\1***@", value)


def mirror_dir() -> Path | None:
    """A local folder laid out like shared/datasets/ that stands in for the network."""
    value = os.environ.get("SEQFLOW_MIRROR", "").strip()
    return Path(value).expanduser().resolve() if value else None


def use_mirror(path: str | os.PathLike | None) -> None:
    """Point this process (and the libraries it drives) at a mirror folder."""
    if not path:
        return
    folder = Path(path).expanduser().resolve()
    if not folder.is_dir():
        raise FileNotFoundError(
            f"mirror folder {folder} does not exist: pass --mirror (or SEQFLOW_MIRROR) "
            "pointing at a folder laid out like shared/datasets/"
        )
    os.environ["SEQFLOW_MIRROR"] = str(folder)
    os.environ["HF_HUB_OFFLINE"] = "1"  # with a mirror nothing may touch the Hub
    nltk_data = folder / "nltk_data"
    if nltk_data.is_dir():
        old = os.environ.get("NLTK_DATA")
        os.environ["NLTK_DATA"] = f"{nltk_data}{os.pathsep}{old}" if old else str(nltk_data)
