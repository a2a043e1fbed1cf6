"""A folder seqflow must write to that cannot take the write: no space left (ENOSPC, EDQUOT),
a read-only file system (EROFS), no permission (EACCES, EPERM). Each becomes one line naming
the folder and what it needs; the writer removes its temporary files before raising it."""

import errno
import logging
import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path

FULL = {errno.ENOSPC, errno.EDQUOT}
READ_ONLY = {errno.EROFS}
DENIED = {errno.EACCES, errno.EPERM}
FULL_TEXT = ("No space left on device", "database or disk is full")  # no errno: SQLite's
READ_ONLY_TEXT = ("Read-only file system", "attempt to write a readonly database")


class StorageError(OSError):
    """A write failed for want of space or permission; str() is the whole explanation."""

    def __str__(self) -> str:
        return self.strerror or ""


def _size(n: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} bytes"


def cause(err: BaseException) -> tuple[int, str | None] | None:
    """(errno, file name if known) of the first storage fault in `err` or the exceptions
    behind it, else None."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        code, text = getattr(err, "errno", None), str(err)
        name = getattr(err, "filename", None)
        if code in FULL | READ_ONLY | DENIED:
            return code, name
        if any(t in text for t in FULL_TEXT):
            return errno.ENOSPC, name
        if any(t in text for t in READ_ONLY_TEXT):
            return errno.EROFS, name
        err = err.__cause__ or err.__context__
    return None


def existing(folder: Path) -> Path:
    """`folder`, or its nearest ancestor that exists (what df can report on)."""
    folder = Path(folder).resolve()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def line(code: int, folder: Path) -> str:
    """The one line for storage fault `code` in `folder`: what failed and the fix."""
    where = existing(folder)
    move = "or point SEQFLOW_DATA_DIR at another folder"
    if code in FULL:
        try:
            free = f"{_size(shutil.disk_usage(where).free)} free"
        except OSError:
            free = "free space unknown"
        return (f"no space left in {folder} ({free}): seqflow writes its stages, checkpoints "
                f"and MLflow store there; free some space on that disk {move}")  # fmt: skip
    if code in READ_ONLY:
        return (f"{folder} is on a read-only file system: seqflow writes its stages, "
                f"checkpoints and MLflow store there; remount it read-write {move}")  # fmt: skip
    return (f"no permission to write in {folder}: seqflow writes its stages, checkpoints and "
            f"MLflow store there; give this user write access to it {move}")  # fmt: skip


def explained(err: BaseException, folder: Path) -> StorageError | None:
    """A StorageError when `err` is a storage fault, else None. It names `folder`, or the
    folder of the file that failed when that file is elsewhere."""
    if isinstance(err, StorageError):
        return err
    if (found := cause(err)) is None:
        return None
    code, name = found
    folder = Path(folder).resolve()
    if name and not Path(name).resolve().is_relative_to(folder):
        folder = Path(name).resolve().parent
    return StorageError(code, line(code, folder))


@contextmanager
def writing(folder: Path):
    """Storage faults inside the block become one StorageError naming `folder`."""
    try:
        yield
    except Exception as err:
        if (known := explained(err, folder)) is not None and known is not err:
            raise known from None
        raise


def probe(folder: Path) -> None:
    """Create `folder` if needed and write (then remove) a small file in it: raises
    StorageError when it cannot take a write."""
    path = Path(folder) / f".tmp-probe-{uuid.uuid4().hex[:8]}"
    with writing(folder):
        try:
            Path(folder).mkdir(parents=True, exist_ok=True)
            with open(path, "wb") as out:
                out.write(b"\0" * 65536)  # a stage's smallest file takes more than this
                out.flush()
                os.fsync(out.fileno())
        finally:
            if path.exists():
                path.unlink(missing_ok=True)


def quiet_tracebacks() -> None:
    """Log records about a StorageError carry no traceback (Prefect logs every failed task and
    flow run with one): its message already says what failed and how to fix it."""
    make = logging.getLogRecordFactory()
    if getattr(make, "_seqflow", False):
        return

    def record(*args, **kwargs):
        rec = make(*args, **kwargs)
        exc = rec.exc_info[1] if isinstance(rec.exc_info, tuple) else None
        if isinstance(exc, StorageError):
            rec.exc_info, rec.exc_text = None, None
        return rec

    record._seqflow = True
    logging.setLogRecordFactory(record)
