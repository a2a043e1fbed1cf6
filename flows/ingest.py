"""`seqflow ingest <pipeline> FILE...`: verify new data files, copy them into
data/incoming/<pipeline>/ atomically, then emit the Prefect event `seqflow.data.arrived` that the
pipeline's retrain deployment is triggered by (prefect.yaml)."""

import os
import shutil
import uuid
from pathlib import Path

from tasks.data import _read_rows, sha256_file
from tasks.engine.settings import data_dir

EVENT = "seqflow.data.arrived"
SUFFIX = {"word2vec": ".csv", "charlm": ".txt"}  # pipelines that take dropped-in files


def resource_id(pipeline: str) -> str:
    return f"seqflow.incoming.{pipeline}"


def verify(pipeline: str, path: Path) -> None:
    """Raise a clear error when `path` would fail the pipeline's retrain."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if path.suffix != SUFFIX[pipeline]:
        raise ValueError(f"{path}: {pipeline} takes {SUFFIX[pipeline]} files")
    if pipeline == "word2vec":
        from tasks.engine.catalog import DATASETS

        table, _, _ = _read_rows(path, DATASETS["tweets_hate_speech"])
        if table.num_rows == 0:
            raise ValueError(f"{path}: no data rows, nothing to train on")
    else:
        from tasks.chars import read_incoming

        read_incoming(path)


def ingest(pipeline: str, files: list[Path]) -> list[dict]:
    """Verify every file first (nothing is copied if one is bad), then copy each one into
    the incoming folder under a temp name and rename it into place. Returns what arrived."""
    if pipeline not in SUFFIX:
        raise ValueError(f"{pipeline} takes no new data files (only {', '.join(SUFFIX)})")
    for f in files:
        verify(pipeline, Path(f))
    folder = data_dir() / "incoming" / pipeline
    folder.mkdir(parents=True, exist_ok=True)
    arrived = []
    for f in map(Path, files):
        target, sha = folder / f.name, sha256_file(f)
        if target.exists() and sha256_file(target) != sha:
            raise FileExistsError(f"{target} exists with other content: rename {f.name}")
        tmp = folder / f".{f.name}.{uuid.uuid4().hex[:8]}.part"
        shutil.copyfile(f, tmp)
        os.replace(tmp, target)
        arrived.append({"name": f.name, "sha256": sha, "bytes": target.stat().st_size})
    return arrived


def emit_arrival(pipeline: str, arrived: list[dict]):
    """The Prefect event that triggers the pipeline's retrain deployment."""
    from prefect.events import emit_event

    names = ", ".join(a["name"] for a in arrived)
    return emit_event(
        event=EVENT,
        resource={"prefect.resource.id": resource_id(pipeline), "seqflow.pipeline": pipeline},
        payload={"files": arrived, "note": f"{len(arrived)} new file(s): {names}"},
    )
