"""Unpacking a downloaded .tar.gz safely, and reading a parallel (source, target) text pair.

An archive is unpacked into a temp folder beside its destination and renamed into place only
once every member was checked and written: a failed or refused extraction leaves nothing behind.
Members that would land outside the destination, links and device files are refused; macOS
metadata (``._*`` files, ``__MACOSX/``) is skipped.
"""

import shutil
import tarfile
import uuid
import zlib
from pathlib import Path, PurePosixPath


class ArchiveError(RuntimeError):
    """An archive or an extracted file is unusable; the message says which and what to do."""


def _extract_into(archive: Path, tmp: Path) -> list[str]:
    """Check and write every member into the (fresh) folder tmp; return the file names."""
    files: set[str] = set()
    root = tmp.resolve()
    with tarfile.open(archive, "r:*") as tar:
        for member in tar:
            rel = PurePosixPath(member.name)  # "." parts dropped
            if rel.is_absolute() or ".." in rel.parts:
                raise ArchiveError(
                    f"{archive}: member {member.name!r} has an absolute path or '..' and would be "
                    "written outside the destination; refusing to extract. Re-download the "
                    "archive from its source, or unpack it by hand after checking its contents."
                )
            if rel.parts[:1] == ("__MACOSX",) or rel.name.startswith("._"):
                continue  # macOS resource forks and Finder metadata, never real data
            if not (member.isfile() or member.isdir()):
                kind = "a device, FIFO or other special file"
                if member.issym() or member.islnk():
                    kind = f"a link to {member.linkname!r}"
                raise ArchiveError(
                    f"{archive}: member {member.name!r} is {kind}; only regular files and folders "
                    "are extracted. Re-download the archive from its source, or unpack it by hand "
                    "after checking its contents."
                )
            target = tmp.joinpath(*rel.parts)
            # Belt and braces: no links exist in tmp, so this only catches what the check missed.
            if not target.resolve().is_relative_to(root):
                raise ArchiveError(
                    f"{archive}: member {member.name!r} resolves outside the destination; "
                    "refusing to extract. Re-download the archive from its source."
                )
            try:
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                if not rel.parts:
                    raise ArchiveError(
                        f"{archive}: file member {member.name!r} has an empty name; "
                        "re-download the archive from its source."
                    )
                target.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                with source, open(target, "wb") as out:
                    shutil.copyfileobj(source, out, 1 << 20)
            except OSError as exc:
                raise ArchiveError(
                    f"{archive}: could not write member {member.name!r} ({exc}); check the "
                    "archive for clashing file and folder names and free disk space, then retry."
                ) from exc
            files.add(rel.as_posix())
    return sorted(files)


def safe_extract(archive: Path, dest: Path) -> list[str]:
    """Unpack archive into dest (replacing it) atomically; return the regular files' names."""
    archive, dest = Path(archive), Path(dest)
    if not archive.is_file():
        raise ArchiveError(f"{archive} does not exist; download it first, then extract to {dest}.")
    tmp = dest.parent / f".{dest.name}.tmp-{uuid.uuid4().hex}"
    tmp.mkdir(parents=True)
    try:
        names = _extract_into(archive, tmp)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)  # nothing half-extracted stays, whatever went wrong
        if isinstance(exc, (tarfile.TarError, EOFError, zlib.error, OSError)):
            raise ArchiveError(
                f"{archive}: could not be read as a .tar.gz ({exc}); it is probably truncated "
                f"or corrupt. Delete it, download it again, then retry extracting into {dest}."
            ) from exc
        raise
    # Rename dance: move any old dest aside, move tmp in, then drop the old one.
    old = None
    if dest.exists() or dest.is_symlink():
        old = dest.parent / f".{dest.name}.old-{uuid.uuid4().hex}"
        dest.rename(old)
    try:
        tmp.rename(dest)
    except OSError as exc:
        if old is not None:
            old.rename(dest)
        shutil.rmtree(tmp, ignore_errors=True)
        raise ArchiveError(
            f"{archive}: extracted fine but could not move it into {dest} ({exc}); check "
            "permissions on its parent folder and retry."
        ) from exc
    if old is not None and old.is_dir() and not old.is_symlink():
        shutil.rmtree(old, ignore_errors=True)
    elif old is not None:
        old.unlink(missing_ok=True)
    return names


def _read_lines(path: Path) -> list[str]:
    """A UTF-8 file's lines without their "\\n" / "\\r\\n"; blank lines at the very end dropped."""
    try:
        # utf-8-sig: a leading byte-order mark is not part of the first line.
        raw = Path(path).read_bytes()
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ArchiveError(
            f"{path} is not valid UTF-8 (line {line}, byte {exc.start}); re-download the "
            "archive it came from, or convert the file to UTF-8."
        ) from exc
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    # The final newline (and Multi30k's extra blank line at the end) is not a sentence.
    while lines and lines[-1] == "":
        lines.pop()
    return lines


def read_parallel(src_path: Path, trg_path: Path) -> list[tuple[str, str]]:
    """The (source, target) sentence pairs of two line-aligned files."""
    src, trg = _read_lines(src_path), _read_lines(trg_path)
    if not src and not trg:
        raise ArchiveError(
            f"{src_path} and {trg_path} hold no sentences: re-download the archive and "
            "extract it again."
        )
    if len(src) != len(trg):
        raise ArchiveError(
            f"{src_path} has {len(src)} lines but {trg_path} has {len(trg)}: the two sides of a "
            "split must align line by line; re-download the archive and extract it again."
        )
    return list(zip(src, trg, strict=True))


def find_member(names: list[str], suffix: str) -> str:
    """The one extracted name ending with suffix (e.g. "train.de")."""
    found = [name for name in names if name.endswith(suffix)]
    if len(found) != 1:
        what = "no file" if not found else f"{len(found)} files"
        raise ArchiveError(
            f"{what} ending with {suffix!r} among the extracted files {names}; expected exactly "
            "one. Check that the right archive was downloaded for this split."
        )
    return found[0]
