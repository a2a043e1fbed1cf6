"""What a data file really holds, whatever its name says. A compressed file, an archive or
other binary data renamed .csv/.tsv/.txt is named as such with the fix, before a text reader
misreads it ("not UTF-8", "a control character", a text of replacement characters). Checked by
`seqflow ingest` at the door and by every reader of incoming files (retrain, the flows)."""

from pathlib import Path

HEAD = 4096  # bytes looked at

# magic bytes -> (what the file is, the shell command that gives the text; {name}: its name)
COMPRESSED = {
    b"\x1f\x8b": ("gzip-compressed", "gzip -dc {name} > {plain}"),
    b"BZh": ("bzip2-compressed", "bzip2 -dc {name} > {plain}"),
    b"\xfd7zXZ\x00": ("xz-compressed", "xz -dc {name} > {plain}"),
    b"(\xb5/\xfd": ("zstd-compressed", "zstd -dc {name} > {plain}"),
    b"PK\x03\x04": ("a zip archive", "unzip {name}"),
    b"PK\x05\x06": ("an empty zip archive", ""),
    b"7z\xbc\xaf'\x1c": ("a 7z archive", "7z x {name}"),
}
BINARY = {
    b"%PDF-": "a PDF document",
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF8": "a GIF image",
    b"SQLite format 3\x00": "an SQLite database",
    b"PAR1": "a Parquet file",
    b"\x7fELF": "a program (ELF)",
}


def _utf16_like(head: bytes) -> bool:
    """A byte-order mark, or NUL bytes on one side of every pair (ASCII text in UTF-16)."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return True
    nul = head.count(0)
    return nul > 0 and nul * 3 >= len(head) and nul in (head[0::2].count(0), head[1::2].count(0))


def problem(path: Path, head: bytes | None = None) -> str | None:
    """Why `path` is not a text file, naming it and the fix; None for text (UTF-8 or not:
    the readers say which line is not UTF-8). `head`: its first bytes, when already read."""
    if head is None:
        with open(path, "rb") as fh:
            head = fh.read(HEAD)
    packed = path.suffix in (".gz", ".bz2", ".xz", ".zst")  # new.tsv.gz -> new.tsv
    plain = path.stem if packed else f"{path.stem}-plain{path.suffix}"
    for magic, (what, how) in COMPRESSED.items():
        if head.startswith(magic):
            fix = f"`{how.format(name=path.name, plain=plain)}`" if how else "nothing to unpack"
            verb, gives = (("unpack", "the text file(s) in it") if "archive" in what
                           else ("decompress", "the text file that makes"))  # fmt: skip
            return (f"{path} is {what}, whatever its name says: {verb} it first ({fix}) and "
                    f"give {gives}")  # fmt: skip
    if len(head) > 262 and head[257:262] == b"ustar":
        return (f"{path} is a tar archive, whatever its name says: unpack it first "
                f"(`tar -xf {path.name}`) and give the text file(s) in it")  # fmt: skip
    for magic, what in BINARY.items():
        if head.startswith(magic):
            return f"{path} is {what}, not text: give a UTF-8 text file"
    if _utf16_like(head):
        return (f"{path} looks like UTF-16 (byte-order mark or NUL bytes between letters): "
                "save it as UTF-8 and run again")  # fmt: skip
    if (at := head.find(b"\x00")) >= 0:
        line = head[:at].count(b"\n") + 1
        return (f"{path}, line {line}: a NUL byte, so binary data, not text: give a UTF-8 "
                "text file")  # fmt: skip
    return None
