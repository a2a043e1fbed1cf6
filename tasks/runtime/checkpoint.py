"""Training checkpoints: one file per finished epoch, so a killed run can pick up after it.

They live in `<data>/checkpoints/<pipeline>/<key>/epoch-NNNN.pt`, the key a hash of what the
run trains on (data fingerprints + settings), so re-running the same command finds them. Each
file is written to a temp name and renamed into place (a reader never sees half a file) and read
with `torch.load(weights_only=True)`: RNG states are stored as tensors and plain types. The
newest two epochs' files are kept: the newest is read back before the older ones go.
"""

import hashlib
import json
import logging
import os
import random
import shutil
import uuid
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock, Timeout

from tasks.engine import storage
from tasks.engine.settings import data_dir
from tasks.engine.stage import remove_stale_temps

log = logging.getLogger(__name__)


def folder(pipeline: str, *parts) -> Path:
    """Where checkpoints of this setup live (parts: fingerprints, settings; JSON-able)."""
    key = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
    return data_dir() / "checkpoints" / pipeline / key[:16]


def claim(where: Path) -> FileLock | None:
    """An exclusive lock on a checkpoint folder, or None when another run holds it. The OS
    releases the lock when its holder dies, so a killed run never blocks the next one."""
    where.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(where.parent / f"{where.name}.lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return None
    return lock


def write(path: Path, state: dict) -> Path:
    """torch.save to a temp name beside `path`, flushed to disk, then rename: a reader never
    sees half a file. A full or read-only disk: StorageError naming the folder, no temp left."""
    tmp = path.parent / f".tmp-{uuid.uuid4().hex[:8]}.pt"
    try:
        with storage.writing(path.parent):
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as out:
                torch.save(state, out)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def save(where: Path, epoch: int, state: dict) -> Path:
    """Write the state after `epoch` (0-based) and read it back; only then do the files older
    than the one before it go. Two stay, so a damaged newest file costs one epoch, not all."""
    path = write(where / f"epoch-{epoch + 1:04d}.pt", state)
    try:
        load(path)
    except Exception as err:
        path.unlink(missing_ok=True)
        raise RuntimeError(f"checkpoint {path} did not read back ({err}); the earlier ones "
                           f"are kept") from None  # fmt: skip
    older = sorted(p for p in where.glob("epoch-*.pt") if p.name < path.name)
    for old in older[:-1]:
        old.unlink(missing_ok=True)
    return path


def load(path: Path) -> dict:
    """A checkpoint of ours, read weights-only: tensors and plain types, never code."""
    import pickle

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise RuntimeError(
            f"{path} holds objects other than weights ({str(err).splitlines()[-1][:200]}); it "
            "was not written by this version of seqflow. Delete it, or run with "
            "--set train.resume=false"
        ) from None


def latest(where: Path) -> tuple[Path, dict] | None:
    """The newest readable checkpoint in `where` (which may not exist yet), or None."""
    remove_stale_temps(where)
    for path in sorted(where.glob("epoch-*.pt"), reverse=True):
        try:
            return path, load(path)
        except Exception as err:  # a damaged file: fall back to an older one
            log.warning("checkpoint %s is unreadable (%s); skipping it", path, err)
    return None


def discard(where: Path) -> None:
    """Remove a setup's checkpoints once its model is safely logged."""
    shutil.rmtree(where, ignore_errors=True)


def rng_state() -> dict:
    """The global torch (+CUDA), python and numpy streams, as weights-only types."""
    _, key, pos, has_gauss, gauss = np.random.get_state()
    numpy = {"key": torch.from_numpy(key.astype(np.int64)), "pos": int(pos),
             "has_gauss": int(has_gauss), "gauss": float(gauss)}  # fmt: skip
    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy_global": numpy}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    g = state["numpy_global"]
    np.random.set_state(("MT19937", g["key"].numpy().astype(np.uint32), g["pos"],
                         g["has_gauss"], g["gauss"]))  # fmt: skip


def save_best(where: Path, model_state: dict, epoch: int, value: float) -> Path:
    """best.pt: the weights of the best epoch so far by the recipe's selection metric."""
    return write(where / "best.pt", {"model": model_state, "epoch": epoch, "value": value})


def load_best(where: Path) -> dict | None:
    path = where / "best.pt"
    return load(path) if path.is_file() else None
