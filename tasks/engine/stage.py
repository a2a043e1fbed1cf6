"""Stage outputs on disk: a folder of files plus `manifest.json`, keyed by what made them.

A stage's key is a hash of named parts: its inputs' content fingerprints, its parameters, the
hashes of its code (its module and the project modules it imports; tasks/engine/lineage.py) and the
versions of the libraries that shape its output. The output folder is
`<data>/stages/<pipeline>/<stage>/<key>`; it is built in a temp folder and renamed into place
with its manifest written last, so a folder with a manifest is complete. A later run with the
same key verifies the files against the manifest and reuses them (a cache hit).
"""

import contextlib
import hashlib
import json
import logging
import os
import shutil
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import pyarrow as pa
import pyarrow.parquet as pq
from filelock import FileLock

from tasks.engine import storage
from tasks.engine.lineage import digest, key_parts
from tasks.engine.settings import data_dir


def run_logger():
    """Prefect's run logger inside a flow or task (shown in the UI), else a plain logger."""
    try:
        from prefect import get_run_logger

        return get_run_logger()
    except Exception:
        return logging.getLogger(__name__)


MANIFEST = "manifest.json"


@dataclass(frozen=True)
class StageOutput:
    """What a stage hands to the next one: a folder, its content fingerprint and its stats."""

    stage: str
    path: str
    key: str
    fingerprint: str
    cached: bool
    stats: dict = field(default_factory=dict)
    parts: dict = field(default_factory=dict)  # the named parts of `key` (tasks/engine/lineage.py)

    @classmethod
    def at(cls, stage: str, path: str | Path) -> "StageOutput":
        """A stored stage output known by its folder alone (what a DDP rank is handed)."""
        return cls(stage, str(path), "", "", True)

    def file(self, name: str) -> Path:
        return Path(self.path) / name

    @property
    def files(self) -> list[str]:
        return sorted(read_manifest(Path(self.path))["files"])


def sha256_file(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def read_manifest(folder: Path) -> dict:
    return json.loads((folder / MANIFEST).read_text())


def _verify(folder: Path) -> dict | None:
    """The manifest if every file it lists is present with its recorded hash, else None."""
    try:
        manifest = read_manifest(folder)
    except (OSError, ValueError):
        return None
    for name, meta in manifest["files"].items():
        path = folder / name
        if not path.is_file() or path.stat().st_size != meta["bytes"]:
            return None
        if sha256_file(path) != meta["sha256"]:
            return None
    return manifest


def run_stage(
    pipeline: str,
    stage: str,
    *,
    inputs: dict[str, str],
    params: dict | None = None,
    code: tuple[ModuleType, ...] = (),
    libs: tuple[str, ...] = (),
    build: Callable[[Path], dict],
    root: Path | None = None,
) -> StageOutput:
    """Reuse the stage's output for this key if it is intact, otherwise build it atomically.

    `build(folder)` writes the stage's files into `folder` and returns its stats (JSON-able).
    `code`: the modules whose source is part of the key; by default the one defining `build`
    (with the project modules it imports, tasks/engine/lineage.py).
    """
    key, parts = key_parts(inputs, params or {}, code or (sys.modules[build.__module__],), libs)
    root = root or data_dir()
    base = root / "stages" / pipeline / stage
    final = base / key[:20]

    def reuse(manifest: dict, how: str) -> StageOutput:
        run_logger().info("stage %s: %s, reusing %s", stage, how, final)
        return StageOutput(
            stage, str(final), key, manifest["fingerprint"], True, manifest["stats"], parts
        )

    if (manifest := _verify(final)) is not None:
        return reuse(manifest, "cache hit")
    locks = root / "locks" / pipeline / stage
    locks.mkdir(parents=True, exist_ok=True)
    with FileLock(locks / f"{key[:20]}.lock"):  # one builder per key; a concurrent run waits
        if (manifest := _verify(final)) is not None:  # the run we waited for built it
            return reuse(manifest, "built by a concurrent run")
        if final.exists():  # an incomplete or corrupted earlier output: never read it again
            run_logger().warning(
                "stage %s: %s is incomplete or corrupted; rebuilding it", stage, final
            )
            shutil.rmtree(final)
        remove_stale_temps(base)
        tmp = base / f".tmp-{key[:12]}-{uuid.uuid4().hex[:8]}"
        try:  # a disk that fills up or is read-only: one error naming the folder
            with storage.writing(base):
                tmp.mkdir(parents=True)
                started = time.perf_counter()
                stats = build(tmp)
                files = {
                    p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size}
                    for p in sorted(tmp.iterdir())
                }
                manifest = {
                    "pipeline": pipeline,
                    "stage": stage,
                    "key": key,
                    "parts": parts,
                    "fingerprint": digest({n: m["sha256"] for n, m in files.items()}),
                    "files": files,
                    "stats": stats,
                    "seconds": round(time.perf_counter() - started, 3),
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                }
                (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
                with contextlib.suppress(OSError):  # another run finished it first: theirs is good
                    os.replace(tmp, final)
        finally:  # the temp folder is gone once renamed; else (an error, a lost race) it goes now
            shutil.rmtree(tmp, ignore_errors=True)
    run_logger().info("stage %s: computed in %.2fs -> %s", stage, manifest["seconds"], final)
    return StageOutput(stage, str(final), key, manifest["fingerprint"], False, stats, parts)


def remove_stale_temps(folder: Path, max_age_s: float = 6 * 3600) -> int:
    """Delete `.tmp-*` files and folders older than max_age_s: left by killed processes (never
    read: only a renamed folder with a manifest counts). Returns how many went."""
    removed, cutoff = 0, time.time() - max_age_s
    for tmp in folder.glob(".tmp-*"):
        with contextlib.suppress(OSError):  # removed meanwhile by another process
            if tmp.stat().st_mtime < cutoff:
                shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()
                removed += 1
    return removed


def write_table(table: pa.Table, path: Path) -> None:
    """Stage tables are Parquet, zstd-compressed."""
    pq.write_table(table, path, compression="zstd")
